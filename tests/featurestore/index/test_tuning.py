"""Exact k-NN over chunks and the recall it gives the tuning: checked against numpy on small data."""

from __future__ import annotations

import numpy as np
import pytest

import featurestore.index.tuning as tuning
from featurestore.vectors import prepare
from tests.featurestore.index.test_index import clustered


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_exact_knn_over_chunks_gives_the_one_pass_answer(monkeypatch, metric):
    monkeypatch.setattr(tuning, "ADD_CHUNK", 100)  # ten chunks of 100 rows and a last one of 3, fewer than k
    x = clustered(1003, 16, seed=2)
    q = prepare(x[:20] + 0.01, metric)
    scores, rows = tuning.exact_knn(x, q, 10, metric)
    base = prepare(x, metric)
    if metric == "cosine":
        every = q @ base.T
        best = np.argsort(-every, axis=1, kind="stable")[:, :10]
    else:
        every = ((q[:, None, :] - base[None, :, :]) ** 2).sum(-1)
        best = np.argsort(every, axis=1, kind="stable")[:, :10]
    assert rows.shape == scores.shape == (20, 10) and rows.min() >= 0 and rows.max() < 1003
    np.testing.assert_allclose(scores, np.take_along_axis(every, best, 1), rtol=1e-4, atol=1e-4)
    assert [set(r) for r in rows.tolist()] == [set(r) for r in best.tolist()]


def test_exact_knn_asks_for_no_more_neighbours_than_there_are_rows():
    x = clustered(4, 16, seed=3)
    scores, rows = tuning.exact_knn(x, prepare(x, "cosine"), 10, "cosine")
    assert rows.shape == (4, 4) and sorted(rows[0].tolist()) == [0, 1, 2, 3]
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)  # each row is its own nearest
