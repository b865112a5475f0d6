"""The vector codec of feature tables: ``(n, dim) float32`` matrices <-> the binary embedding column.

Each row's embedding is ``dim * 4`` little-endian float32 bytes (see
:mod:`featurestore.store.schema`); a column of one chunk decodes to a numpy view of Arrow's
buffer, without a copy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from featurestore.errors import SchemaMismatchError, StoreError


def embeddings_to_numpy(column: pa.ChunkedArray, dim: int) -> np.ndarray:
    """``(n, dim) float32`` from the binary embedding column: a view when it is one chunk."""
    width = dim * 4
    chunks = [c for c in column.chunks if len(c)]
    if not chunks:
        return np.zeros((0, dim), dtype=np.float32)

    def view(chunk: pa.Array) -> np.ndarray:
        if chunk.null_count:
            raise StoreError("the embedding column has missing values in live rows; the table is damaged")
        offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32 if chunk.type == pa.binary() else np.int64)
        start, stop = offsets[chunk.offset], offsets[chunk.offset + len(chunk)]
        if stop - start != width * len(chunk):
            raise SchemaMismatchError(f"stored embeddings are not {dim}-d float32 ({(stop - start) / max(len(chunk), 1) / 4:g} values per row)")
        return np.frombuffer(chunk.buffers()[2], dtype=np.float32, count=(stop - start) // 4, offset=int(start)).reshape(-1, dim)

    if len(chunks) == 1:
        return view(chunks[0])
    out = np.empty((sum(len(c) for c in chunks), dim), dtype=np.float32)
    row = 0
    for chunk in chunks:
        out[row : row + len(chunk)] = view(chunk)
        row += len(chunk)
    return out


def vectors_to_binary(vectors: np.ndarray) -> pa.Array:
    """The inverse of :func:`embeddings_to_numpy`: ``(n, dim) float32`` -> binary column."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    n, dim = vectors.shape
    offsets = np.arange(0, (n + 1) * dim * 4, dim * 4, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(vectors)])
