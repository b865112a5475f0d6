"""Optional dependencies: import one where it is needed, or say which extra provides it."""

from __future__ import annotations

import importlib
from types import ModuleType

from featurestore.errors import DependencyError

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or say which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise DependencyError(
            f"{module} is not installed; install the extra with: pip install 'featurestore[{extra}]'"
        ) from exc
