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


def newest(keys: Sequence[np.ndarray], created_at: np.ndarray) -> np.ndarray:
    """Ascending row numbers of the newest row of each distinct key: ``keys`` are row-aligned
    ``(n,)`` arrays whose values together form a row's key, ``created_at`` is ``(n,)``."""
    import pandas as pd

    if len(created_at) == 0:
        return np.zeros(0, np.int64)
    names = [f"key{i}" for i in range(len(keys))]
    frame = pd.DataFrame({**dict(zip(names, keys)), "created_at": created_at})
    return np.sort(frame.sort_values("created_at", kind="stable").drop_duplicates(names, keep="last").index.to_numpy())


def newest_rows(table: pa.Table) -> np.ndarray:
    """Row numbers of each entity's newest row, tombstones included."""
    return newest([_ids(table)], table.column("created_at").to_numpy())


def latest_mask(table: pa.Table, *, granularity: str) -> pa.ChunkedArray | pa.Array:
    """True for the rows of each entity's latest state (its newest row; for ``granularity``
    ``"token"`` every row of its newest write) unless that is a tombstone."""
    deleted = pc.fill_null(table.column("deleted"), False)
    n = table.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    if pc.count_distinct(table.column("entity_id")).as_py() == n:
        return pc.invert(deleted)
    ids, created_at = _ids(table), table.column("created_at").to_numpy()
    top = newest([ids], created_at)
    keep = np.zeros(n, dtype=bool)
    if granularity == "token":
        import pandas as pd

        entity = pd.factorize(ids)[0]
        written = np.empty(len(top), dtype=created_at.dtype)
        written[entity[top]] = created_at[top]
        keep = created_at == written[entity]
    else:
        keep[top] = True
    return pc.and_(pa.array(keep), pc.invert(deleted))


def _ids(table: pa.Table) -> np.ndarray:
    return table.column("entity_id").to_numpy(zero_copy_only=False)
