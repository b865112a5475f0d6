"""What changed since an index file was written: vectors added (searched exactly) and positions removed.

An index update writes only this (``delta-<token>.parquet``), the id map and ``index.json``; the index
file itself stays as it was, so an update costs in proportion to the change, not to the index.
Search merges the index file's results, with the removed positions filtered out by an ID
selector, and an exact search over the added vectors. Once the delta holds more than
``FOLD_SHARE`` of the rows or ``FOLD_ROWS`` rows it is folded into the index (one full write;
a rebuild for index types that cannot take ids or removals in place).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.extras import require
from featurestore.store.codec import embeddings_to_numpy, vectors_to_binary

FOLD_SHARE = 0.05  # fold the delta into the index file past this share of the rows
FOLD_ROWS = 20_000  # ... or past this many rows: every search scans the added vectors exactly
FEW_QUERIES = 16  # up to this many queries, the added vectors are scanned with numpy
ADDED, REMOVED = 0, 1  # the ``kind`` of a delta file's row


@dataclass
class Delta:
    """Added positions with their prepared vectors (normalised for cosine), and removed positions."""

    dim: int
    metric: str
    added: np.ndarray  # (n,) int64 FAISS ids, ascending
    vectors: np.ndarray  # (n, dim) float32, prepared
    removed: np.ndarray  # (m,) int64, sorted: ids of the index file that are no longer live

    @classmethod
    def empty(cls, dim: int, metric: str) -> "Delta":
        return cls(dim, metric, np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.added) + len(self.removed)

    def add(self, positions: np.ndarray, prepared: np.ndarray) -> None:
        self.added = np.concatenate([self.added, np.asarray(positions, np.int64)])
        self.vectors = np.vstack([self.vectors, prepared]) if len(self.vectors) else np.ascontiguousarray(prepared, np.float32)

    def remove(self, positions: np.ndarray) -> None:
        """Drop added vectors at ``positions``; the others become tombstones over the index file."""
        positions = np.asarray(positions, np.int64)
        in_added = np.isin(self.added, positions)
        self.removed = np.union1d(self.removed, np.setdiff1d(positions, self.added[in_added]))
        self.added, self.vectors = self.added[~in_added], self.vectors[~in_added]

    def search(self, q: np.ndarray, k: int, subset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact top ``k`` among the added vectors (those in ``subset`` when given): scores and FAISS ids."""
        keep = np.isin(self.added, subset) if subset is not None else slice(None)
        ids, vectors = self.added[keep], self.vectors[keep]
        if not len(ids):
            return _missing(len(q), k, self.metric)
        kk = min(k, len(ids))
        if len(q) <= FEW_QUERIES:  # one matrix product: FAISS's threads cost more than they save here
            scores = q @ vectors.T
            if self.metric != "cosine":
                scores = (q * q).sum(1, keepdims=True) + (vectors * vectors).sum(1) - 2 * scores
            key = -scores if self.metric == "cosine" else scores
            rows = np.argpartition(key, kk - 1, axis=1)[:, :kk]
            rows = np.take_along_axis(rows, np.argsort(np.take_along_axis(key, rows, 1), axis=1, kind="stable"), 1)
            scores = np.take_along_axis(scores, rows, 1).astype(np.float32)
        else:
            faiss = require("faiss", "index")
            metric = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
            scores, rows = faiss.knn(q, vectors, kk, metric=metric)
        found = np.where(rows >= 0, ids[np.clip(rows, 0, None)], -1)
        return _pad(scores, found, k, self.metric)

    # ---------------------------------------------------------------- storage
    def save(self, path: Path) -> None:
        """Write the delta to ``path`` (a temporary name first, then renamed)."""
        n, m = len(self.added), len(self.removed)
        embeddings = vectors_to_binary(np.ascontiguousarray(self.vectors, np.float32))
        table = pa.table({
            "kind": pa.array(np.r_[np.full(n, ADDED), np.full(m, REMOVED)].astype(np.int8)),
            "position": pa.array(np.r_[self.added, self.removed].astype(np.int64)),
            "embedding": pa.concat_arrays([embeddings, pa.nulls(m, pa.binary())]),
        })
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp, compression="NONE")
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path, dim: int, metric: str) -> "Delta":
        """The delta written to ``path``; ValueError or OSError when it cannot be read."""
        table = pq.read_table(path)
        kind = table.column("kind").to_numpy()
        positions = table.column("position").to_numpy()
        vectors = embeddings_to_numpy(table.filter(pa.array(kind == ADDED)).column("embedding"), dim)
        return cls(dim, metric, positions[kind == ADDED].astype(np.int64), np.array(vectors, np.float32),
                   np.sort(positions[kind == REMOVED].astype(np.int64)))


def merge(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray], k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The best ``k`` of two ``(scores, ids)`` results per query (ids -1: no result, always last)."""
    scores = np.hstack([first[0], second[0]])
    ids = np.hstack([first[1], second[1]])
    key = np.where(ids >= 0, -scores if metric == "cosine" else scores, np.inf)
    order = np.argsort(key, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _missing(n: int, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    worst = -np.finfo(np.float32).max if metric == "cosine" else np.finfo(np.float32).max
    return np.full((n, k), worst, np.float32), np.full((n, k), -1, np.int64)


def _pad(scores: np.ndarray, ids: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    if scores.shape[1] >= k:
        return scores, ids
    fill_scores, fill_ids = _missing(len(scores), k - scores.shape[1], metric)
    return np.hstack([scores, fill_scores]), np.hstack([ids, fill_ids])


def selector_excluding(removed: np.ndarray) -> Any:
    """A FAISS ID selector of every id but ``removed`` (the caller keeps the inner selector alive)."""
    faiss = require("faiss", "index")
    inner = faiss.IDSelectorBatch(np.asarray(removed, np.int64))
    outer = faiss.IDSelectorNot(inner)
    outer.referenced = inner  # the SWIG wrapper does not own its inner selector
    return outer
