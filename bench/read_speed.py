"""Reading a feature table's latest vectors (``FeatureTable.latest().vectors``) vs ``np.load`` of a .npy.

``--rows`` random float32 vectors (``--dim``) are appended straight into a Delta feature table
with :meth:`FeatureTable.append` (base-schema rows, unique ids), once as one commit and once as
``--commits`` commits. Each read opens a fresh ``FeatureTable`` (metadata read included) and
returns an ``(n, dim) float32`` array; the baseline is ``np.load`` of the same matrix saved as
.npy. ``parquet_floor`` (pyarrow reading only the embedding column of the same files) is reported
to tell the Parquet format's cost from the store's. Both warm (page cache), best and median of ``--repeats``. Target: npload / read >= 0.5
(median), for both layouts.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from _common import emit, log
from featurestore.store import FeatureTable, TableMeta, base_schema, embeddings_to_numpy, vectors_to_binary

TARGET = 0.5


def make_rows(vectors: np.ndarray, start: int) -> pa.Table:
    """Rows of the base schema for ``vectors`` (ids ``start..``); columns not set here are null."""
    n = len(vectors)
    now = datetime.now(timezone.utc)
    schema = base_schema()
    values: dict[str, pa.Array] = {
        "entity_id": pa.array([str(start + i) for i in range(n)], pa.string()),
        "content_hash": pa.array([f"{start + i:064x}" for i in range(n)], pa.string()),
        "encoder_id": pa.array(["random-384"] * n, pa.string()),
        "embedding": vectors_to_binary(vectors),
        "event_timestamp": pa.array([now] * n, schema.field("event_timestamp").type),
        "created_at": pa.array([now] * n, schema.field("created_at").type),
        "deleted": pa.array([False] * n, pa.bool_()),
        "n_tokens": pa.array(np.full(n, 12, np.int32)),
        "n_oov": pa.array(np.zeros(n, np.int32)),
        "zero_vector": pa.array([False] * n, pa.bool_()),
    }
    return pa.table([values.get(f.name, pa.nulls(n, f.type)) for f in schema], schema=schema)


def timings(fn: Callable[[], np.ndarray], repeats: int, expected: np.ndarray) -> list[float]:
    got = fn()  # warm-up, and a correctness check
    if got.shape != expected.shape or not np.array_equal(np.sort(got[:, 0]), np.sort(expected[:, 0])):
        raise SystemExit("bench: the read returned other vectors than were written")
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def parquet_floor(files: list[Path], dim: int) -> np.ndarray:
    """The format's floor: pyarrow reading only the embedding column of the table's files, no Delta log."""
    parts = [pq.read_table(f, columns=["embedding"], memory_map=True).column("embedding") for f in files]
    return embeddings_to_numpy(pa.chunked_array([c for p in parts for c in p.chunks]), dim)


def embedding_codec(uri: Path) -> str:
    files = sorted(uri.glob("*.parquet"))
    meta = pq.ParquetFile(files[0]).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    return str(meta.row_group(0).column(names.index("embedding")).compression)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--commits", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (2,000 rows, 3 repeats)")
    args = parser.parse_args()
    rows, repeats = (2_000, 3) if args.quick else (args.rows, args.repeats)

    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((rows, args.dim), dtype=np.float32)
    meta = TableMeta(view="bench", encoder_id="random-384", encoder_name="random", encoder_spec={"kind": "random"},
                     dim=args.dim, metric="cosine", modality="text")
    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-read-"))
    results: dict[str, dict[str, float | int | str]] = {}
    try:
        npy = tmp / "vectors.npy"
        np.save(npy, matrix)
        npload = timings(lambda: np.load(npy), repeats, matrix)
        for label, commits in (("one_commit", 1), (f"{args.commits}_commits", args.commits)):
            uri = tmp / label
            start = 0
            for chunk in np.array_split(matrix, commits):
                FeatureTable(str(uri)).append(make_rows(chunk, start), meta)
                start += len(chunk)
            log(f"[read_speed] {label}: table version {FeatureTable(str(uri)).version()}, timing {repeats} reads")
            read = timings(lambda: FeatureTable(str(uri)).latest().vectors, repeats, matrix)
            files = sorted(uri.glob("*.parquet"))
            floor = timings(lambda: parquet_floor(files, args.dim), repeats, matrix)
            ratio = statistics.median(npload) / statistics.median(read)
            results[label] = {
                "commits": commits,
                "read_best_seconds": round(min(read), 5),
                "read_median_seconds": round(statistics.median(read), 5),
                "ratio": round(ratio, 4),
                "ratio_best": round(min(npload) / min(read), 4),
                "parquet_floor_median_seconds": round(statistics.median(floor), 5),
                "embedding_codec": embedding_codec(uri),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    emit(
        {
            "benchmark": "read_speed",
            "quick": args.quick,
            "rows": rows,
            "dim": args.dim,
            "repeats": repeats,
            "npload_best_seconds": round(min(npload), 5),
            "npload_median_seconds": round(statistics.median(npload), 5),
            **results,
            "ratio": results["one_commit"]["ratio"],
            "target": f">= {TARGET} (npload_median / read_median)",
            "pass": all(float(r["ratio"]) >= TARGET for r in results.values()),
        }
    )


if __name__ == "__main__":
    main()
