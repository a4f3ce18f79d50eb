"""``python -m nasmed`` (and ``torchrun -m nasmed``) runs the command line."""

from __future__ import annotations

from nasmed.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
