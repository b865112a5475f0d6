"""A read of a table in memory: ids, a ``(n, dim) float32`` matrix and the kept columns, and the
lookups of entity rows and kept values that search, predict and the feature service make on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["FeatureFrame"]


@dataclass
class FeatureFrame:
    """The result of a read.

    ``ids`` is ``(n,) object`` (str), ``vectors`` is ``(n, dim) float32``, ``columns`` holds the
    remaining requested columns row-aligned with them, ``version`` is the table version read.
    """

    ids: np.ndarray
    vectors: np.ndarray
    columns: pa.Table
    version: int
    encoder_id: str
    _row_of: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)
    _lookups: int = field(default=-1, init=False, repr=False, compare=False)  # -1: no map wanted
    _values: tuple[list[str], list[np.ndarray]] | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ids)

    def keep_row_map(self) -> None:
        """Answer lookups from an entity id -> row map, built at the second lookup, for a frame
        that answers many (a past state kept for ``as_of`` lookups): a lookup then costs
        microseconds instead of hashing every id again, and a frame used once never pays for the map."""
        self._lookups = max(self._lookups, 0)

    def prepare_lookups(self) -> None:
        """Build now what many lookups of this frame read (a warm search handle's generation):
        the entity id -> row map and each kept column as an array of its Python values, so that
        :meth:`kept` is a list index (10 hits: ~3 us, where an Arrow take costs ~40 us)."""
        self._lookups = max(self._lookups, 1)
        self._row_of = {e: i for i, e in enumerate(self.ids.tolist())}
        self._values = (self.columns.column_names, [_python_values(column) for column in self.columns.columns])

    def rows_of(self, entity_ids: Sequence[str]) -> np.ndarray:
        """``(len(entity_ids),) int64``: each entity's row (-1: not in the frame). Without a kept
        map, an Arrow hash lookup: a one-off search touches a few rows and must not build a
        Python map of all of them."""
        if self._lookups >= 0:
            self._lookups += 1
            if self._row_of is None and self._lookups > 1:
                self._row_of = {e: i for i, e in enumerate(self.ids.tolist())}
        if self._row_of is not None:
            return np.fromiter((self._row_of.get(e, -1) for e in entity_ids), dtype=np.int64, count=len(entity_ids))
        found = pc.index_in(pa.array(list(entity_ids), pa.string()), value_set=pa.array(self.ids, pa.string()))
        return np.asarray(found.fill_null(-1), dtype=np.int64)

    def kept(self, rows: np.ndarray) -> list[dict[str, Any]]:
        """The kept columns of ``rows`` (``(n,) int64``), one dict per row; ``{}`` for a row of -1."""
        names, values = self.kept_values(rows)
        if not names:
            return [{} for _ in range(len(rows))]
        return [dict(zip(names, row)) if r >= 0 else {} for r, row in zip(np.asarray(rows).tolist(), zip(*values))]

    def kept_values(self, rows: np.ndarray) -> tuple[list[str], list[list[Any]]]:
        """The kept columns' names and, per column, the Python values at ``rows`` (``(n,) int64``;
        a row of -1 reads an arbitrary row: the caller drops it). A list index per column once
        :meth:`prepare_lookups` ran, else an Arrow take."""
        names, arrays = self.kept_arrays(rows)
        return names, [array.tolist() for array in arrays]

    def kept_arrays(self, rows: np.ndarray) -> tuple[list[str], list[np.ndarray]]:
        """Like :meth:`kept_values`, each column as a ``(n,)`` numpy array whose ``tolist()`` gives
        the Python values (what a warm search handle keeps per generation, in its index's order)."""
        rows = np.asarray(rows, dtype=np.int64)
        names = self.columns.column_names
        if not len(self) or not len(rows) or not names:  # nothing to read: every row is one the caller drops
            return names, [np.full(len(rows), None, dtype=object) for _ in names]
        if self._values is not None:
            return self._values[0], [array[rows] for array in self._values[1]]
        taken = self.columns.take(np.clip(rows, 0, None))
        return names, [_python_values(column) for column in taken.columns]


def _python_values(column: pa.ChunkedArray) -> np.ndarray:
    """``(n,)``: a column's values as a numpy array whose ``tolist()`` gives what Arrow's
    ``to_pylist()`` does (numbers without nulls stay numeric arrays; strings are objects)."""
    kind = column.type
    if column.null_count == 0 and (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        return column.to_numpy()
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_numpy(zero_copy_only=False)
    values = np.empty(len(column), dtype=object)
    values[:] = column.to_pylist()
    return values
