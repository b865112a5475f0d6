"""Helpers shared by the benchmark scripts: environment, generated inputs, timed subprocesses, output.

Every benchmark prints exactly one JSON object on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

PYTHON = sys.executable
_ENV_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
for _key, _value in _ENV_DEFAULTS.items():
    os.environ.setdefault(_key, _value)


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """The benchmark's one JSON object, on stdout."""
    sys.stdout.write(json.dumps(result, indent=2, default=str) + "\n")
    sys.stdout.flush()


def cli() -> str:
    """The ``featurestore`` command of the interpreter running the benchmark."""
    beside = Path(PYTHON).with_name("featurestore")
    found = str(beside) if beside.is_file() else shutil.which("featurestore")
    if not found:
        raise SystemExit("bench: the featurestore command is not installed beside this python")
    return found


def sms_path() -> Path:
    from featurestore import settings

    return settings.data_dir() / "spam" / "SMSSpamCollection"


def write_sms_input(rows: int, out: Path) -> dict[str, int]:
    """Write exactly ``rows`` lines of the SMSSpamCollection, repeated, to ``out`` (sms layout)."""
    lines = [line for line in sms_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(out, "w", encoding="utf-8") as fh:
        for i in range(rows):
            fh.write(lines[i % len(lines)] + "\n")
    used = [lines[i % len(lines)].partition("\t")[2] for i in range(min(rows, len(lines)))]
    return {"rows": rows, "source_lines": len(lines), "distinct_texts": len(set(used))}


def timed_run(cmd: Sequence[str], *, cwd: str | Path | None = None) -> tuple[float, str]:
    """Run ``cmd`` to completion; return its wall-clock seconds and stdout (stderr passes through)."""
    started = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} exited with {proc.returncode}")
    return seconds, proc.stdout


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a command printed (the CLI prints one, possibly indented)."""
    start = stdout.find("{")
    if start < 0:
        raise SystemExit(f"bench: no JSON object in the output: {stdout[-500:]!r}")
    return json.loads(stdout[start:])
