"""Read snapshots: the latest state of a table version as one memory-mapped Arrow IPC file.

Reading a Delta version means decoding Parquet and resolving the newest row per entity; the
result for a version never changes, so the first read of a version writes it once under
``<store>/_cache/<view>/<encoder_id>/v<version>.arrow`` and later reads map it without a copy
(vectors as a ``fixed_size_binary`` column that numpy views in place). Older versions' files
are removed when a newer one is written. The Delta table stays the source of truth: a missing,
stale or unreadable snapshot only costs the slower read.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

SNAPSHOT_FORMAT = 1


def snapshot_path(table_uri: str, version: int) -> Path:
    """``<root>/_cache/<view>/<encoder_id>/v<version>.arrow`` for a table at ``<root>/views/<view>/<encoder_id>``."""
    table = Path(table_uri)
    return table.parents[2] / "_cache" / table.parent.name / table.name / f"v{version:08d}-f{SNAPSHOT_FORMAT}.arrow"


def read_snapshot(path: Path) -> pa.Table | None:
    """The snapshot table, memory-mapped, or None when there is none (or it cannot be read)."""
    if not path.is_file():
        return None
    try:
        with pa.memory_map(str(path), "r") as source:
            return pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid):
        return None


def write_snapshot(path: Path, ids: pa.Array, vectors: np.ndarray, columns: pa.Table) -> None:
    """Write atomically (temporary file + rename) and drop older versions' snapshots; best effort."""
    n, dim = vectors.shape
    embedding = pa.FixedSizeBinaryArray.from_buffers(pa.binary(dim * 4), n, [None, pa.py_buffer(np.ascontiguousarray(vectors, "<f4"))])
    table = pa.table({"entity_id": ids, "embedding": embedding, **{c: columns.column(c) for c in columns.column_names}})
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table.combine_chunks())
        os.replace(tmp, path)
        for old in path.parent.glob("v*.arrow"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:  # a read-only store still reads, just without the snapshot
        tmp.unlink(missing_ok=True)


def snapshot_vectors(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """``(n, dim) float32`` view of a fixed_size_binary column (one chunk: no copy)."""
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return np.zeros((0, dim), np.float32)
    if len(chunks) > 1:
        return np.concatenate([snapshot_vectors(pa.chunked_array([c]), dim) for c in chunks])
    chunk = chunks[0]
    return np.frombuffer(chunk.buffers()[1], dtype="<f4", count=len(chunk) * dim, offset=chunk.offset * dim * 4).reshape(-1, dim)
