"""The commands that do little, each a whole ``featurestore`` process, vs a bare interpreter.

Data: a word2vec view of 200 SMS messages (text and label kept) and a spam head on it, built
once in a temporary store (or ``--store S``, which must hold a view ``sms`` and a model). Each
variant is one fresh interpreter, end to end (start-up, imports, the work, the output), timed in
rounds that alternate the variants (A B A B ...), with its CPU seconds beside the wall seconds:

- ``help`` (``featurestore --help``), ``search_help`` (``featurestore search --help``);
- ``info``, ``models`` (``--store S``, rich tables), ``encoders``;
- ``user_error``: an unknown view (one line, exit 2), ``featurestore search --view smss --id 3``;
- baselines: ``python -c pass`` (the interpreter alone) and ``python -c "import typer"`` (the
  command-line library the CLI is built on).

Target: each command <= 1.5 s on a quiet machine. ``ratios`` are each command's minimum over
the ``import typer`` baseline's.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from _common import PYTHON, cli, emit, log, timed_process, wall_cpu_summary, write_sms_input

TARGET_S = 1.5


def build(work: Path) -> Path:
    """A 200-row word2vec view ``sms`` and a logistic spam head, through the command line (no Prefect)."""
    store = work / "store"
    write_sms_input(200, work / "SMSSpamCollection")
    fs = cli()
    log("[cli_startup] building a 200-row word2vec view and a spam head")
    subprocess.run([fs, "materialize", str(work / "SMSSpamCollection"), "--view", "sms", "--encoder", "word2vec", "--id-col", "@line",
                    "--keep", "label,text", "--store", str(store), "--runner", "inline", "--quiet", "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run([fs, "train", "spam", "--view", "sms", "--head", "logistic", "--store", str(store), "--runner", "inline", "--quiet", "--json"],
                   check=True, stdout=subprocess.DEVNULL)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (at least 2)")
    parser.add_argument("--store", help="an existing store with a view 'sms' and a model (default: build one)")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 2
    if args.rounds < 2:
        raise SystemExit("bench: --rounds must be at least 2 (the variants alternate)")
    work = Path(tempfile.mkdtemp(prefix="fs-bench-cli-startup-"))
    try:
        store = args.store or str(build(work))
        fs = cli()
        variants = {
            "python_pass": ([PYTHON, "-c", "pass"], 0),
            "import_typer": ([PYTHON, "-c", "import typer"], 0),
            "help": ([fs, "--help"], 0),
            "search_help": ([fs, "search", "--help"], 0),
            "info": ([fs, "info", "--store", store], 0),
            "models": ([fs, "models", "--store", store], 0),
            "encoders": ([fs, "encoders"], 0),
            "user_error": ([fs, "search", "--view", "smss", "--id", "3", "--store", store], 2),
        }
        for cmd, expect in variants.values():  # warm-up: page cache, .pyc files
            timed_process(cmd, expect=expect)
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, (cmd, expect) in variants.items():
                runs[name].append(timed_process(cmd, expect=expect))
            log(f"[cli_startup] round {round_ + 1}: " + ", ".join(f"{n} {r[-1][0]:.2f} s" for n, r in runs.items()))
        results = {name: wall_cpu_summary(r) for name, r in runs.items()}
        base = results["import_typer"]["wall_s_min"]
        commands = [n for n in variants if n not in ("python_pass", "import_typer")]
        checks = {f"{name}<={TARGET_S}s": results[name]["wall_s_min"] <= TARGET_S for name in commands}
        emit({
            "benchmark": "cli_startup",
            "quick": args.quick,
            "rounds": args.rounds,
            "results": results,
            "ratios_over_import_typer": {name: round(results[name]["wall_s_min"] / base, 2) for name in commands},
            "targets": checks,
            "pass": all(checks.values()),
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
