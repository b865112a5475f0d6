"""Hits: a FAISS search's ``(scores, ids)`` turned into records (entity id, score, kept columns).

:class:`HitTables` is built once per served generation (see :mod:`featurestore.serving`), so
that naming a query's hits is a ``searchsorted`` and one numpy take per column, with no
per-hit lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from featurestore.index.vector_index import VectorIndex
    from featurestore.store import FeatureFrame

__all__ = ["HitTables"]


@dataclass(frozen=True)
class HitTables:
    """What turns FAISS's ``(scores, ids)`` into hits, built once per generation: the entity ids,
    frame rows and kept-column values of the indexed entities in the index's id-map order, each
    with one extra slot at the end that a FAISS id of -1 (fewer hits than k) reads, so that a
    query's hits are one numpy take per column, with no per-hit lookups."""

    positions: np.ndarray  # (n,) int64: the id map's sorted FAISS ids
    dense: bool  # the FAISS ids are 0..n-1, the id map's own slots: no search for them (a fresh build)
    names: np.ndarray  # (n + 1,) object: entity ids; None in the last slot
    rows: np.ndarray  # (n + 1,) int64: frame rows (-1: not in the frame); -1 in the last slot
    columns: list[str]  # the kept columns
    values: list[np.ndarray]  # per kept column (n + 1,): the values at ``rows``
    complete: bool  # every indexed entity is in the frame (the usual case: every hit has its kept columns)

    @classmethod
    def of(cls, index: "VectorIndex | None", frame: "FeatureFrame") -> "HitTables":
        if index is None or not len(index.positions):
            positions, names, rows = np.zeros(0, np.int64), np.array([None], dtype=object), np.array([-1], np.int64)
            dense = False
        else:
            positions = index.positions
            names = np.append(index.entity_ids, np.array([None], dtype=object))
            rows = np.append(frame.rows_of(index.entity_ids.tolist()), -1)
            n = len(positions)
            # 0..n-1 in order (sorted unique ids from 0 to n-1), and FAISS can return no other id
            dense = bool(positions[0] == 0 and positions[-1] == n - 1 and not len(index.delta) and index.index.ntotal == n)
        columns, values = frame.kept_arrays(rows)
        return cls(positions=positions, dense=dense, names=names, rows=rows, columns=columns, values=values, complete=bool((rows[:-1] >= 0).all()))

    def records(self, scores: np.ndarray, found: np.ndarray) -> list[list[dict[str, Any]]]:
        """``(n_queries, k)`` scores and FAISS ids as hits, best first: ``entity_id``, ``score``
        (rounded to 6 decimals) and the kept columns; FAISS's -1 and ids the id map does not
        hold are dropped; an entity deleted since the index was saved has no kept columns."""
        k = found.shape[1] if found.ndim == 2 else 0
        if not k:
            return [[] for _ in found]
        flat = found.ravel()
        if self.dense:
            slots = flat  # -1 reads the last slot
        else:
            n = len(self.positions)
            slots = np.minimum(np.searchsorted(self.positions, flat), max(n - 1, 0))
            slots[(self.positions[slots] != flat) if n else slice(None)] = -1
        names = self.names[slots].tolist()
        # float32 scores: rounding their float64 values in numpy gives exactly Python's round(s, 6)
        records = _records(names, scores.astype(np.float64).round(6).ravel().tolist(), self.columns, [v[slots].tolist() for v in self.values])
        if not self.complete:
            for i in np.flatnonzero(self.rows[slots] < 0).tolist():
                records[i] = {"entity_id": records[i]["entity_id"], "score": records[i]["score"]}
        if None in names:
            return [[r for r in records[i : i + k] if r["entity_id"] is not None] for i in range(0, len(records), k)]
        return [records] if len(records) == k else [records[i : i + k] for i in range(0, len(records), k)]


def _records(names: list[Any], scores: list[float], columns: list[str], values: list[list[Any]]) -> list[dict[str, Any]]:
    """One dict per hit: ``entity_id``, ``score``, then the kept columns. Written as dict displays
    for up to two columns, which build ~3.5x faster than ``dict(zip(keys, row))`` (10 hits: 2 us vs 7.5 us)."""
    if not columns:
        return [{"entity_id": e, "score": s} for e, s in zip(names, scores)]
    if len(columns) == 1:
        (a,), (va,) = columns, values
        return [{"entity_id": e, "score": s, a: x} for e, s, x in zip(names, scores, va)]
    if len(columns) == 2:
        (a, b), (va, vb) = columns, values
        return [{"entity_id": e, "score": s, a: x, b: y} for e, s, x, y in zip(names, scores, va, vb)]
    keys = ("entity_id", "score", *columns)
    return [dict(zip(keys, row)) for row in zip(names, scores, *values)]
