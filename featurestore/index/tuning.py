"""How close an index's answers are to exact search, and the search parameters that bring them there.

:func:`tune` measures recall@10 against exact k-NN (:func:`exact_knn`) with stored vectors as
queries, each left out of its own results, and raises nprobe / efSearch / k_factor from the
fastest setting to the most exact until the target is met.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.extras import require
from featurestore.index.choice import ADD_CHUNK
from featurestore.vectors import prepare

if TYPE_CHECKING:
    from featurestore.index.vector_index import Rows, VectorIndex

RECALL_K = 10


def exact_knn(x: Rows, q: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, rows)``, both ``(len(q), min(k, len(x)))``: the exact top ``k`` rows of ``x`` for the
    prepared queries ``q`` (inner product of unit vectors for cosine, squared L2 distance
    otherwise), best first. ``x`` is read and prepared a chunk at a time: memory never holds a
    full copy."""
    faiss = require("faiss", "index")
    from faiss.contrib.exhaustive_search import knn_ground_truth

    chunks = (prepare(x[start : start + ADD_CHUNK], metric) for start in range(0, x.shape[0], ADD_CHUNK))
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    return knn_ground_truth(q, chunks, min(k, x.shape[0]), metric_type=faiss_metric, ngpu=0)


def tune(index: VectorIndex, x: Rows, target_recall: float, *, seed: int = 0, queries: int = 500) -> None:
    """Set ``index``'s search parameters (and its measured recall@10 and latency) to the fastest
    candidate that reaches ``target_recall`` on ``x``, the vectors it holds (the most exact one
    when none does)."""
    from faiss.contrib.evaluation import knn_intersection_measure

    n = x.shape[0]
    rng = np.random.default_rng(seed + 1)
    picks = np.sort(rng.choice(n, size=min(n, queries), replace=False))
    q = prepare(x[picks], index.info.metric)
    k = min(RECALL_K, n - 1) if n > 1 else 1
    truth = _without_self(exact_knn(x, q, k + 1, index.info.metric)[1], picks, k)
    for params in candidates(index.index, index.info.factory):
        index.apply(params)
        started = time.perf_counter()
        _, found = index.index.search(q, k + 1)
        seconds = time.perf_counter() - started
        recall = knn_intersection_measure(truth, _without_self(found, picks, k))
        index.info.params, index.info.recall_at_10 = params, round(recall, 4)
        index.info.latency_ms = round(1000 * seconds / len(q), 4)
        if recall >= target_recall:
            return


def candidates(index: Any, factory: str) -> list[dict[str, Any]]:
    """Search parameters from fastest to most exact."""
    if factory.startswith("IVF"):
        nlist = _nlist(index)
        probes = [p for p in (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048) if p < nlist] + [nlist]
        if "Refine" in factory:
            return [{"nprobe": p, "k_factor": kf} for p in probes if p >= min(8, nlist) for kf in (4, 16, 64)]
        return [{"nprobe": p} for p in probes]
    if factory.startswith("HNSW"):
        return [{"efSearch": ef} for ef in (16, 32, 48, 64, 96, 128, 192, 256, 512)]
    return [{}]


def _nlist(index: Any) -> int:
    faiss = require("faiss", "index")
    try:
        return int(faiss.extract_index_ivf(index).nlist)
    except RuntimeError:
        return 1


def _without_self(found: np.ndarray, picks: np.ndarray, k: int) -> np.ndarray:
    """Each query is a stored vector: drop it from its own results (it would make recall look
    better than for a new query) and keep ``k``."""
    return np.array([[i for i in row if i != own][:k] + [-1] * max(0, k - len([i for i in row if i != own])) for row, own in zip(found.tolist(), picks.tolist())], dtype=np.int64)
