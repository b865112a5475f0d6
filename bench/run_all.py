"""Run every benchmark script, collect their JSON objects into one, print it and save it.

Each script runs in its own process (``--quick`` passed through); its stderr passes through. The
combined object goes to stdout and to ``bench/results/latest.json`` (git-ignored). Exit status 1
when a script crashed or printed no JSON; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    "materialize_speed.py",
    "text_materialize.py",
    "read_speed.py",
    "latest_rows.py",
    "remote_read.py",
    "materialize_memory.py",
    "image_encode.py",
    "image_flow.py",
    "image_tta.py",
    "token_speed.py",
    "onnx_encode.py",
    "onnx_query.py",
    "token_materialize.py",
    "index_speed.py",
    "index_train.py",
    "train_speed.py",
    "ood_warning.py",
    "prefect_overhead.py",
    "dask_scaling.py",
    "refresh_speed.py",
    "prefect_busy.py",
    "search_cli.py",
    "cli_startup.py",
)


def run(script: str, quick: bool) -> dict[str, Any]:
    cmd = [sys.executable, str(BENCH / script), *(["--quick"] if quick else [])]
    print(f"[run_all] {script}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    seconds = round(time.perf_counter() - started, 1)
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return {"error": f"no JSON object on stdout (exit {proc.returncode})", "stdout": proc.stdout[-2000:], "pass": False}
    if proc.returncode:
        return {"error": f"exit {proc.returncode}", **result, "pass": False}
    return {**result, "wall_seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script")
    args = parser.parse_args()
    results = {Path(s).stem: run(s, args.quick) for s in SCRIPTS}
    combined = {
        "quick": args.quick,
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "results": results,
        "all_pass": all(r.get("pass") is True for r in results.values()),
    }
    text = json.dumps(combined, indent=2)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
