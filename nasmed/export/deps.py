"""Optional dependencies of the export routes, with one-line errors that say how to install them."""

from __future__ import annotations

import importlib
from types import ModuleType

from nasmed.errors import ConfigError

__all__ = ["INSTALL_HINTS", "require"]

#: How to install each optional dependency without replacing the pinned CPU torch.
INSTALL_HINTS = {
    "nnunetv2": "pip install 'nasmed[nnunet]' && pip install --no-deps nnunetv2==2.8.1 "
    "dynamic-network-architectures==0.4.4 (or `make install`; see docs/export.md)",
    "onnx": "pip install 'nasmed[export]'",
    "onnxruntime": "pip install 'nasmed[export]'",
}


def require(module: str, what: str) -> ModuleType:
    """Import ``module`` or raise a :class:`ConfigError` naming ``what`` needs it and the fix.

    Raises:
        ConfigError: the module is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = INSTALL_HINTS.get(module.split(".")[0], f"pip install {module.split('.')[0]}")
        raise ConfigError(
            f"{what} needs {module.split('.')[0]}, which is not installed ({exc.name}); "
            f"install it with: {hint}"
        ) from None
