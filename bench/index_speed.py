"""FAISS index lifecycle on clustered synthetic vectors vs exact search, in the same run.

Data: ``--rows`` (1,000,000) clustered 384-d float32 vectors and 1,000 held-out queries,
generated deterministically, written to a feature table. Measured: the auto index (budgeted
choice, recall-tuned) against exact search (``IndexFlatIP`` over the same vectors): recall@10,
batch QPS ratio, single-query p50 latency (also after the update, with its delta), index
memory vs the budget; ``update_index`` after appending 1% new rows vs a full rebuild; filtered search where 1% of rows match (exact over
them) and where 99% match (the index over the subset) returns k results for every query.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from _common import emit, log

import pyarrow as pa


def clustered(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    out = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.standard_normal((n, dim), dtype=np.float32)
    return out.astype(np.float32)


def append(table, ids: list[str], vectors: np.ndarray, labels: list[str], meta) -> None:
    from featurestore.store import vectors_to_binary
    from featurestore.store.schema import TIMESTAMP

    now = datetime.now(timezone.utc)
    n = len(ids)
    rows = pa.table({
        "entity_id": pa.array(ids), "content_hash": pa.array(ids), "attrs_hash": pa.array([None] * n, pa.string()),
        "encoder_id": pa.array([meta.encoder_id] * n), "embedding": vectors_to_binary(vectors),
        "event_timestamp": pa.array([now] * n, TIMESTAMP), "created_at": pa.array([now] * n, TIMESTAMP),
        "deleted": pa.array([False] * n), "tag": pa.array(labels),
    })
    table.append(rows, meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--budget", default="4GB")
    parser.add_argument("--quick", action="store_true", help="50,000 rows")
    args = parser.parse_args()
    import faiss

    from featurestore.index import build_index, load_index, parse_bytes, search, update_index
    from featurestore.index.lifecycle import index_dir
    from featurestore.store import Store, TableMeta

    n = 50_000 if args.quick else args.rows
    dim, k = 384, 10
    rng = np.random.default_rng(42)
    centers = rng.standard_normal((1024, dim), dtype=np.float32)
    work = Path(tempfile.mkdtemp(prefix="fs-bench-index-"))
    try:
        store = Store(work)
        meta = TableMeta(view="synth", encoder_id="synth-0000000000", encoder_name="synth", encoder_spec={}, dim=dim, metric="cosine", modality="text")
        table = store.table("synth", meta.encoder_id)
        log(f"[index_speed] writing {n} rows")
        for start in range(0, n, 200_000):
            m = min(200_000, n - start)
            append(table, [str(i) for i in range(start, start + m)], clustered(m, dim, rng, centers),
                   ["rare" if i % 100 == 0 else "common" for i in range(start, start + m)], meta)
        queries = clustered(1000, dim, rng, centers)
        log("[index_speed] building the auto index")
        started = time.perf_counter()
        info = build_index("synth", store=store, memory_budget=args.budget, target_recall=0.95).info
        rebuild_seconds = time.perf_counter() - started
        import resource

        build_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; writing + building, nothing else yet
        from featurestore.index import VectorIndex
        from featurestore.vectors import prepare

        vi = VectorIndex.load(index_dir(table, store=store), encoder_id=meta.encoder_id)
        frame = table.latest([])
        q = prepare(queries, "cosine")
        exact = faiss.IndexFlatIP(dim)  # the baseline: exact search over the same normalised vectors
        exact.add(prepare(frame.vectors, "cosine"))
        t0 = time.perf_counter()
        _, truth = exact.search(q, k)
        exact_seconds = time.perf_counter() - t0
        del exact
        t0 = time.perf_counter()
        _, found = vi.search(queries, k)
        index_seconds = time.perf_counter() - t0
        truth_ids = frame.ids[truth]
        found_ids = np.array(vi.entity_at(found), dtype=object).reshape(found.shape)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(truth_ids.tolist(), found_ids.tolist())]))
        singles = []
        for i in range(200):
            t0 = time.perf_counter()
            vi.search(queries[i : i + 1], k)
            singles.append(time.perf_counter() - t0)
        log("[index_speed] appending 1% and updating")
        extra = max(1, n // 100)
        append(table, [str(i) for i in range(n, n + extra)], clustered(extra, dim, rng, centers), ["common"] * extra, meta)
        t0 = time.perf_counter()
        updated = update_index("synth", store=store)
        update_seconds = time.perf_counter() - t0
        after = load_index("synth", store=store)  # the index file plus the update's delta (1% of the rows)
        singles_after = []
        for i in range(200):
            t0 = time.perf_counter()
            after.search(queries[i : i + 1], k)
            singles_after.append(time.perf_counter() - t0)
        log("[index_speed] filtered search")
        results = search("synth", store=store, vectors=queries[:100], k=k, where="tag = 'rare'")
        exact_k = all(len(r) == k and all(h["tag"] == "rare" for h in r) for r in results)
        t0 = time.perf_counter()  # 99% of the rows match: the index searches the subset (one call, 100 queries)
        broad = search("synth", store=store, vectors=queries[:100], k=k, where="tag = 'common'")
        broad_seconds = time.perf_counter() - t0
        exact_k = exact_k and all(len(r) == k and all(h["tag"] == "common" for h in r) for r in broad)
        budget = parse_bytes(args.budget)
        emit({
            "benchmark": "index_speed",
            "rows": n,
            "factory": info.factory,
            "params": info.params,
            "recall_at_10": round(recall, 4),
            "batch_qps_index": round(len(q) / index_seconds, 1),
            "batch_qps_exact": round(len(q) / exact_seconds, 1),
            "qps_ratio": round(exact_seconds / index_seconds, 2),
            "single_query_p50_ms": round(1000 * float(np.median(singles)), 3),
            "single_query_p50_after_update_ms": round(1000 * float(np.median(singles_after)), 3),
            "index_memory_mb": round(info.memory_bytes / 1e6, 1),
            "build_peak_rss_mib": round(build_peak_mib, 1),
            "memory_budget_mib": round(budget / 2**20, 1),
            "build_seconds": round(rebuild_seconds, 2),
            "update_seconds": round(update_seconds, 2),
            "update_ratio": round(update_seconds / rebuild_seconds, 3),
            "update_rebuilt": updated.rebuilt,
            "filtered_99pct_call_seconds": round(broad_seconds, 3),
            "filtered_exactly_k": exact_k,
            "targets": {"recall_at_10": ">= 0.95", "qps_ratio": ">= 10", "single_query_p50_ms": "<= 5 (before and after the update)",
                        "update_ratio": "<= 0.1", "memory": "<= budget"},
            "pass": recall >= 0.95 and exact_seconds / index_seconds >= 10 and max(np.median(singles), np.median(singles_after)) <= 0.005
            and update_seconds / rebuild_seconds <= 0.1 and exact_k and info.memory_bytes <= budget and build_peak_mib * 2**20 <= budget,
            "memory_note": "build_peak_rss_mib: peak RSS of this process (MiB, like the budget) after writing the table and building the index from the streamed snapshot",
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
