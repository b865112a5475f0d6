"""Training an IVF-PQ index: the build's training vs FAISS's default training of the same factory, in the same run.

Data: ``--rows`` (300, a small table, and 20,000) clustered 384-d float32 vectors, generated
deterministically. Measured per size: the seconds ``VectorIndex.build(index_type="ivfpq")``
spends in all (training with polysemous training off, under its time bound, adding, tuning),
and the seconds ``index_factory(...).train`` takes with FAISS's defaults (polysemous training on,
what the build did before), capped at ``--baseline-cap`` seconds (reported as at least the cap
when it is reached). Also: how long the chooser takes to refuse 300 x 384 under 100KB.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import emit, log


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, dim)).astype(np.float32)
    return (centers[rng.integers(0, 64, n)] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32)


def baseline_train(factory: str, x: np.ndarray, cap: float) -> tuple[float, bool]:
    """Seconds FAISS's default training of ``factory`` takes on ``x`` (normalised), and whether it hit ``cap``."""
    import faiss

    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    index = faiss.index_factory(x.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    started = time.perf_counter()
    try:
        with faiss.TimeoutGuard(cap):
            index.train(x)
    except RuntimeError as exc:
        if "interrupted" not in str(exc):
            raise
        return time.perf_counter() - started, True
    return time.perf_counter() - started, False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[300, 20_000])
    parser.add_argument("--baseline-cap", type=float, default=600.0, help="seconds the default training may run")
    parser.add_argument("--quick", action="store_true", help="300 rows, baseline capped at 60 s")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.baseline_cap = [300], 60.0
    from featurestore.errors import StoreError
    from featurestore.index import VectorIndex, choose_factory, parse_bytes
    from featurestore.index.choice import train_rows

    sizes = {}
    for n in args.rows:
        x = clustered(n, 384)
        ids = np.array([f"e{i}" for i in range(n)], dtype=object)
        started = time.perf_counter()
        built = VectorIndex.build(ids, x, view="bench", encoder_id="bench-1", metric="cosine", table_version=0, index_type="ivfpq")
        ours = time.perf_counter() - started
        sample = x[np.sort(np.random.default_rng(0).choice(n, size=train_rows(n, "ivfpq"), replace=False))]
        base, capped = baseline_train(built.info.factory, sample, args.baseline_cap)
        log(f"[index_train] {n} rows: {built.info.factory} built in {ours:.1f} s; FAISS's default training {base:.1f} s{' (cap)' if capped else ''}")
        sizes[str(n)] = {
            "factory": built.info.factory, "build_seconds": round(ours, 2), "recall_at_10": built.info.recall_at_10,
            "baseline_train_seconds": round(base, 2), "baseline_capped": capped,
            "speedup_vs_baseline_train": round(base / ours, 1) if ours > 0 else None,
        }
    started = time.perf_counter()
    try:
        choose_factory(300, 384, memory_budget=parse_bytes("100KB"))
        refused = ""
    except StoreError as exc:
        refused = str(exc)
    emit({
        "benchmark": "index_train",
        "sizes": sizes,
        "tiny_budget": {"message": refused, "seconds": round(time.perf_counter() - started, 4)},
        "pass": bool(refused) and all(s["baseline_train_seconds"] > s["build_seconds"] for s in sizes.values()),
    })


if __name__ == "__main__":
    main()
