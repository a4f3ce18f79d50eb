"""The one fit loop under training and search: :class:`~nasmed.engine.loop.Engine` driving a
:class:`~nasmed.engine.loop.Task`.

Modules: ``loop`` (the loop, ``FitResult``), ``callbacks`` (history, checkpoints, progress,
the caller's hook), ``checkpoint`` (the versioned schema and its one loader), ``rng``,
``history``, ``budget`` (time budget), ``strategy`` (single process, DDP; the pipeline's lives in
:mod:`nasmed.pipeline.trainers`), ``precision`` (AMP), ``activation`` (activation
checkpointing), ``ddp_loss`` (Dice over the global batch), ``defaults`` (torch-free).
Nothing is imported here, so configs can read :mod:`nasmed.engine.defaults` without torch.
"""
