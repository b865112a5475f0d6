"""The row schema of feature tables and the metadata each table carries about itself.

Embeddings are stored as a plain binary column of ``dim * 4`` little-endian float32 bytes per
row: Parquet reads it back as one contiguous buffer that numpy views without a copy (a
FixedSizeList column reads ~3x slower), and it stays uncompressed because floats do not
compress.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

import pyarrow as pa

from featurestore.errors import StoreError

Granularity = Literal["sentence", "token", "image"]
TIMESTAMP = pa.timestamp("us", tz="UTC")
SYSTEM_COLUMNS = (
    "entity_id",
    "content_hash",
    "attrs_hash",
    "encoder_id",
    "embedding",
    "event_timestamp",
    "created_at",
    "deleted",
    "n_tokens",
    "n_oov",
    "zero_vector",
)
_VIEW_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def base_schema() -> pa.Schema:
    """The system columns every feature table starts with."""
    return pa.schema(
        [
            pa.field("entity_id", pa.string(), nullable=False),
            pa.field("content_hash", pa.string()),
            pa.field("attrs_hash", pa.string()),
            pa.field("encoder_id", pa.string()),
            pa.field("embedding", pa.binary()),
            pa.field("event_timestamp", TIMESTAMP),
            pa.field("created_at", TIMESTAMP),
            pa.field("deleted", pa.bool_()),
            pa.field("n_tokens", pa.int32()),
            pa.field("n_oov", pa.int32()),
            pa.field("zero_vector", pa.bool_()),
        ]
    )


def check_view_name(view: str) -> str:
    """A view name is a folder name: letters, digits, ``_ . -``; at most 64 characters."""
    if not isinstance(view, str) or not _VIEW_NAME.match(view):
        raise StoreError(
            f"invalid view name {view!r}: use letters, digits, '_', '.', '-' (at most 64, not starting with a symbol)"
        )
    return view


@dataclass(frozen=True)
class TableMeta:
    """What a feature table says about itself (kept in the Delta table's description as JSON)."""

    view: str
    encoder_id: str
    encoder_name: str
    encoder_spec: dict[str, Any]
    dim: int
    metric: str
    modality: str
    granularity: Granularity = "sentence"
    encoder_ref: str | None = None  # how to get the encoder again: "minilm", "w2v:/path" ...
    encoder_options: dict[str, Any] | None = None  # its options, less machine-specific ones (device)
    format_version: int = 1

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None, where: str) -> "TableMeta":
        try:
            data = json.loads(text or "")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise StoreError(f"{where} is not a feature table of this store (its metadata cannot be read: {exc})") from None
