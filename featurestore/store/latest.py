"""The newest row per entity: the one rule every read of a latest state follows.

Of the rows that share a key, the newest is the one with the greatest ``created_at`` (the
write time); on equal ``created_at``, the later row in the order the rows were read (every
reader reads a version's data files in one order, so they all pick the same row). An entity's
latest state is its newest row, or for a token table every row written with it (the rows of
its newest write share its ``created_at``); a tombstone (``deleted``) as the newest row means
the entity is gone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def newest(keys: Sequence[pa.Array | pa.ChunkedArray], created_at: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Ascending row numbers of the newest row of each distinct key: ``keys`` are row-aligned
    columns whose values together form a row's key, ``created_at`` the rows' write times."""
    n = len(created_at)
    if n == 0:
        return np.zeros(0, np.int64)
    codes = [_codes(key) for key in keys]
    order = np.lexsort((np.arange(n), _int64(created_at), *reversed(codes)))  # by key, then time, then row
    last = np.ones(n, dtype=bool)  # the last row of each key in that order
    last[:-1] = np.any([c[order[1:]] != c[order[:-1]] for c in codes], axis=0)
    return np.sort(order[last])


def newest_rows(table: pa.Table) -> np.ndarray:
    """Row numbers of each entity's newest row, tombstones included."""
    return newest([table.column("entity_id")], table.column("created_at"))


def latest_mask(table: pa.Table, *, granularity: str) -> pa.ChunkedArray | pa.Array:
    """True for the rows of each entity's latest state (its newest row; for ``granularity``
    ``"token"`` every row of its newest write) unless that is a tombstone."""
    deleted = pc.fill_null(table.column("deleted"), False)
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    ids = table.column("entity_id")
    if pc.count_distinct(ids).as_py() == n:
        return pc.invert(deleted)
    top = newest([ids], table.column("created_at"))
    keep = np.zeros(n, dtype=bool)
    if granularity == "token":
        entity, written = _codes(ids), _int64(table.column("created_at"))
        newest_write = np.empty(int(entity.max()) + 1, dtype=np.int64)
        newest_write[entity[top]] = written[top]
        keep = written == newest_write[entity]
    else:
        keep[top] = True
    return pc.and_(pa.array(keep), pc.invert(deleted))


def _codes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``(n,) int64``: the same number for equal values (nulls: -1), from Arrow's hash table."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return np.asarray(column.dictionary_encode().indices.fill_null(-1), dtype=np.int64)


def _int64(times: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(pc.cast(times, pa.int64()), dtype=np.int64)
