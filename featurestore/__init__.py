"""featurestore: frozen encoders -> versioned Delta Lake features -> search -> small heads.

Importing this package is cheap: torch, prefect and faiss load only inside the functions that
need them.
"""

from __future__ import annotations

from featurestore.encoders import BaseEncoder, Encoder, get_encoder, list_encoders
from featurestore.errors import (
    DependencyError,
    EncoderError,
    FeatureStoreError,
    SchemaMismatchError,
    SourceError,
    StoreError,
)
from featurestore.materialization import materialize, plan
from featurestore.serving import search, searcher
from featurestore.sources import TextSource
from featurestore.store import FeatureFrame, FeatureTable, Store
from featurestore.training import TrainingSet, training_set

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
    "get_encoder",
    "list_encoders",
    "materialize",
    "plan",
    "search",
    "searcher",
    "training_set",
]
