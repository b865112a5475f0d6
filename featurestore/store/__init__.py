"""The store: Delta Lake feature tables, one per (view, encoder), and their catalog."""

from featurestore.store.catalog import Store, TableInfo
from featurestore.store.schema import TableMeta, base_schema
from featurestore.store.codec import embeddings_to_numpy, vectors_to_binary
from featurestore.store.frame import FeatureFrame
from featurestore.store.table import FeatureTable

__all__ = [
    "FeatureFrame",
    "FeatureTable",
    "Store",
    "TableInfo",
    "TableMeta",
    "base_schema",
    "embeddings_to_numpy",
    "vectors_to_binary",
]
