"""Reading a table on object storage: ``latest().vectors`` of an ``s3://`` store vs deltalake reading the bucket.

``--rows`` random float32 vectors (``--dim``) go into a feature table on a local S3 service
(moto's server in a subprocess) in ``--commits`` commits. The baseline is what a hand-written
reader does: ``DeltaTable(uri).to_pyarrow_table(columns=["embedding"])`` plus the numpy view,
every time from the bucket (and without working out the latest state). The store's first read
after a commit (``cold``) downloads the files and writes a memory-mapped snapshot into the work
folder; later reads of that version (``warm``) check the Delta log and map the snapshot.
Target: baseline_median / warm_median >= 1.5. A local emulator has no network latency, so against
a real bucket the baseline is slower and the ratio larger.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from _common import emit, log
from featurestore.store import Store, TableMeta, embeddings_to_numpy
from read_speed import make_rows, timings

TARGET = 1.5


def start_s3() -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            return server, endpoint
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise SystemExit("bench: the local S3 service (moto) did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--commits", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (2,000 rows, 3 repeats)")
    args = parser.parse_args()
    rows, repeats = (2_000, 3) if args.quick else (args.rows, args.repeats)

    import boto3
    from deltalake import DeltaTable

    server, endpoint = start_s3()
    work = Path(tempfile.mkdtemp(prefix="fs-bench-remote-"))
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true", FEATURESTORE_WORK_DIR=str(work))
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="fs-bench")
        store = Store("s3://fs-bench/store")
        meta = TableMeta(view="bench", encoder_id="random-384", encoder_name="random", encoder_spec={"kind": "random"},
                         dim=args.dim, metric="cosine", modality="text")
        matrix = np.random.default_rng(0).standard_normal((rows, args.dim), dtype=np.float32)
        start = 0
        for chunk in np.array_split(matrix, args.commits):
            store.table("bench", "random-384").append(make_rows(chunk, start), meta)
            start += len(chunk)
        uri = store.table_uri("bench", "random-384")
        log(f"[remote_read] {rows} rows in {args.commits} commits at {uri}; timing {repeats} reads each")

        def baseline() -> np.ndarray:
            table = DeltaTable(uri).to_pyarrow_table(columns=["embedding"])
            return embeddings_to_numpy(table.column("embedding"), args.dim)

        def cold() -> np.ndarray:
            shutil.rmtree(store.path / "_cache", ignore_errors=True)
            return Store(store.root).resolve_table("bench").latest().vectors

        def warm() -> np.ndarray:
            return Store(store.root).resolve_table("bench").latest().vectors

        base = timings(baseline, repeats, matrix)
        first = timings(cold, repeats, matrix)
        again = timings(warm, repeats, matrix)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    ratio = statistics.median(base) / statistics.median(again)
    emit(
        {
            "benchmark": "remote_read",
            "quick": args.quick,
            "rows": rows,
            "dim": args.dim,
            "commits": args.commits,
            "repeats": repeats,
            "baseline_median_seconds": round(statistics.median(base), 5),
            "cold_median_seconds": round(statistics.median(first), 5),
            "warm_median_seconds": round(statistics.median(again), 5),
            "cold_vs_baseline": round(statistics.median(first) / statistics.median(base), 3),
            "ratio": round(ratio, 3),
            "target": f">= {TARGET} (baseline_median / warm_median)",
            "pass": ratio >= TARGET,
        }
    )


if __name__ == "__main__":
    main()
