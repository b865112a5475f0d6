"""featurestore: frozen encoders -> versioned Delta Lake features -> search -> small heads.

Importing this package is cheap: torch, prefect and faiss load only inside the functions that
need them, and the public names below load their modules on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from featurestore.errors import (
    DependencyError,
    EncoderError,
    FeatureStoreError,
    SchemaMismatchError,
    SourceError,
    StoreError,
)

# Where each public name lives. They load on first use (PEP 562), so that importing a submodule
# (``featurestore.errors`` for the command line's error handling, ``featurestore.settings``) does not
# import pyarrow, deltalake and numpy through the whole package.
_LAZY = {
    "BaseEncoder": "featurestore.encoders",
    "Encoder": "featurestore.encoders",
    "get_encoder": "featurestore.encoders",
    "list_encoders": "featurestore.encoders",
    "build_index": "featurestore.index",
    "ensure_index": "featurestore.index",
    "update_index": "featurestore.index",
    "materialize": "featurestore.materialization",
    "search": "featurestore.index.queries",
    "searcher": "featurestore.serving",
    "TextSource": "featurestore.sources",
    "FeatureFrame": "featurestore.store",
    "FeatureTable": "featurestore.store",
    "Store": "featurestore.store",
    "TrainingSet": "featurestore.training",
    "training_set": "featurestore.training",
}

if TYPE_CHECKING:
    from featurestore.encoders import BaseEncoder, Encoder, get_encoder, list_encoders
    from featurestore.index import build_index, ensure_index, update_index
    from featurestore.materialization import materialize
    from featurestore.index.queries import search
    from featurestore.serving import searcher
    from featurestore.sources import TextSource
    from featurestore.store import FeatureFrame, FeatureTable, Store
    from featurestore.training import TrainingSet, training_set


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'featurestore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "BaseEncoder",
    "DependencyError",
    "Encoder",
    "EncoderError",
    "FeatureFrame",
    "FeatureStoreError",
    "FeatureTable",
    "SchemaMismatchError",
    "SourceError",
    "Store",
    "StoreError",
    "TextSource",
    "TrainingSet",
    "build_index",
    "ensure_index",
    "get_encoder",
    "list_encoders",
    "materialize",
    "search",
    "searcher",
    "training_set",
    "update_index",
]
