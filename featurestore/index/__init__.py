"""FAISS indexes over views: chosen by size and memory budget, tuned to a measured recall."""

from featurestore.index.choice import INDEX_TYPES, choose_factory, parse_bytes
from featurestore.index.lifecycle import IndexResult, build_index, ensure_index, has_index, index_info, index_status, load_index, update_index, view_encoder
from featurestore.index.queries import search
from featurestore.index.vector_index import IndexInfo, VectorIndex

__all__ = ["INDEX_TYPES", "IndexInfo", "IndexResult", "VectorIndex", "build_index", "has_index", "choose_factory", "ensure_index", "index_info", "index_status", "load_index", "parse_bytes", "search", "update_index", "view_encoder"]
