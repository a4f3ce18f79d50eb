"""The ``nasmed`` command line: argparse only; every verb calls a plain API function."""
