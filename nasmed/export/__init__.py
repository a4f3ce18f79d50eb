"""Leave nasmed: found architectures as nnU-Net v2 plans, ONNX, TorchScript and MONAI bundles.

- :mod:`nasmed.export.nnunet_net`: :class:`NasmedNnUNet`, the network class a plans file names.
- :mod:`nasmed.export.nnunet_plans`: write an nnU-Net v2 plans file that trains a genotype.
- :mod:`nasmed.export.onnx`: ``model.onnx`` with dynamic spatial axes, checked in onnxruntime.
- :mod:`nasmed.export.torchscript`: ``model.ts`` (traced), checked against PyTorch.
- :mod:`nasmed.export.runtime`: onnxruntime as a backend of :func:`nasmed.infer.predict`.
- :mod:`nasmed.export.bundle`: a MONAI bundle (configs, weights) runnable by ``monai.bundle``.

Every exporter checks its inputs before writing and writes atomically (files through
:mod:`decathlon.fsutil`, folders staged beside the target and renamed), so a failed export
leaves nothing half-written. Optional dependencies are imported only by the route that needs
them (:mod:`nasmed.export.deps`).
"""
