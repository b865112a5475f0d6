"""Peak memory of ``featurestore materialize --encoder word2vec --runner inline``: small vs large input.

Inputs: the SMSSpamCollection repeated to ``--small-rows`` and ``--large-rows`` lines (sms layout,
``--id-col @line``), each materialized into its own empty store. Each run is launched from its own
intermediate Python process, which reports ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the peak RSS
of the command) and, as a cross-check, the largest RSS sum of the command's process tree polled
with psutil every 50 ms. The baseline is the small run: streaming in shards should keep memory
flat, so the target is ``peak_large <= peak_small + --margin-mb`` (300 MB).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _common import PYTHON, cli, emit, log, timed_run, write_sms_input

MEASURE = """
import json, resource, subprocess, sys, time
import psutil
started = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
watched = psutil.Process(proc.pid)
polled = 0
while proc.poll() is None:
    try:
        tree = [watched, *watched.children(recursive=True)]
        polled = max(polled, sum(p.memory_info().rss for p in tree))
    except psutil.Error:
        pass
    time.sleep(0.05)
out = proc.stdout.read()
seconds = time.perf_counter() - started
if proc.returncode:
    sys.exit(f"{sys.argv[1:]} exited with {proc.returncode}")
maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"maxrss_mb": maxrss_kb / 1024, "polled_mb": polled / 2**20, "seconds": seconds,
                  "summary": json.loads(out[out.index("{"):])}))
"""


def measure(rows: int, tmp: Path) -> dict[str, float | int]:
    source = tmp / f"input-{rows}.sms"
    write_sms_input(rows, source)
    cmd = [cli(), "materialize", str(source), "--view", "bench", "--encoder", "word2vec", "--runner", "inline",
           "--store", str(tmp / f"store-{rows}"), "--format", "sms", "--id-col", "@line", "--keep", "label", "--json"]
    log(f"[materialize_memory] {rows} rows")
    _, out = timed_run([PYTHON, "-c", MEASURE, *cmd])
    got = json.loads(out.strip().splitlines()[-1])
    source.unlink()
    shutil.rmtree(tmp / f"store-{rows}", ignore_errors=True)
    return {
        "rows": rows,
        "peak_rss_mb": round(got["maxrss_mb"], 1),
        "polled_peak_rss_mb": round(got["polled_mb"], 1),
        "seconds": round(got["seconds"], 2),
        "encoded": got["summary"]["encoded"],
        "shards": got["summary"]["shards"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-rows", type=int, default=20_000)
    parser.add_argument("--large-rows", type=int, default=200_000)
    parser.add_argument("--margin-mb", type=float, default=300.0)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (1,000 and 10,000 rows)")
    args = parser.parse_args()
    small_rows, large_rows = (1_000, 10_000) if args.quick else (args.small_rows, args.large_rows)

    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-mem-"))
    try:
        small = measure(small_rows, tmp)
        large = measure(large_rows, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    diff = float(large["peak_rss_mb"]) - float(small["peak_rss_mb"])
    emit(
        {
            "benchmark": "materialize_memory",
            "quick": args.quick,
            "small": small,
            "large": large,
            "peak_small_mb": small["peak_rss_mb"],
            "peak_large_mb": large["peak_rss_mb"],
            "difference_mb": round(diff, 1),
            "target": f"peak_large <= peak_small + {args.margin_mb:g} MB",
            "pass": diff <= args.margin_mb,
        }
    )


if __name__ == "__main__":
    main()
