"""The default Prefect path on a busy machine: N `featurestore materialize` flows started at once beside B busy loops.

The failure this guards against: several commands starting Prefect's ephemeral server at once on a loaded
machine died with "Timed out while attempting to connect to ephemeral Prefect API server".
Each command here is a fresh process with a fresh ``HOME`` (no ``~/.prefect``, no
``~/.cache/featurestore``: a fresh machine), no ``PREFECT_API_URL``, the default runner,
``--rows`` SMS lines into its own view with word2vec (the encoder costs next to nothing, so the
time is Prefect's). ``--code`` runs another checkout's code with this interpreter (e.g. the main
branch, for the before/after figures); ``--warm`` keeps the fresh HOME of a first round for a
second one (the template database made).

Reported per command: exit code, seconds, stderr lines and the last stderr line; no target,
the pass condition is every command exiting 0 with an empty stderr.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import PYTHON, REPO, emit, log, write_sms_input


def round_of(code: Path, home: Path, work: Path, n: int, source: Path) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(HOME=str(home), PYTHONPATH=str(code), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    started, procs = time.monotonic(), []
    for i in range(n):
        cmd = [PYTHON, "-m", "flows.cli.main", "materialize", str(source), "--view", f"v{i}", "--encoder", "word2vec",
               "--store", str(work / f"store{i}"), "--format", "sms", "--id-col", "@line", "--json"]
        procs.append(subprocess.Popen(cmd, cwd=code, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    results = []
    for proc in procs:
        _, err = proc.communicate()
        lines = err.strip().splitlines()
        results.append({"exit": proc.returncode, "seconds": round(time.monotonic() - started, 1), "stderr_lines": len(lines),
                        "last_stderr_line": lines[-1][:200] if lines else ""})
        log(f"[prefect_busy] {results[-1]}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--commands", type=int, default=4)
    parser.add_argument("--busy", type=int, default=2, help="CPU-bound processes beside the commands")
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--code", type=Path, default=REPO, help="the checkout whose code the commands run")
    parser.add_argument("--warm", action="store_true", help="a second round in the same HOME (template made)")
    parser.add_argument("--quick", action="store_true", help="two commands, one busy loop")
    args = parser.parse_args()
    if args.quick:
        args.commands, args.busy = 2, 1
    with tempfile.TemporaryDirectory(prefix="bench-prefect-busy-") as tmp:
        work = Path(tmp)
        source = work / "SMSSpamCollection"
        write_sms_input(args.rows, source)
        (work / "home").mkdir()
        busy = [subprocess.Popen([PYTHON, "-c", "while True: pass"]) for _ in range(args.busy)]
        try:
            rounds = [round_of(args.code, work / "home", work / "first", args.commands, source)]
            if args.warm:
                rounds.append(round_of(args.code, work / "home", work / "second", args.commands, source))
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
    emit({
        "benchmark": "prefect_busy",
        "code": str(args.code.resolve()),
        "commands": args.commands,
        "busy_loops": args.busy,
        "rows": args.rows,
        "rounds": rounds,
        "all_succeeded_quietly": all(r["exit"] == 0 and r["stderr_lines"] == 0 for rnd in rounds for r in rnd),
    })


if __name__ == "__main__":
    sys.exit(main())
