"""Helpers shared by the benchmark scripts: environment, generated inputs, timed subprocesses, output.

Every benchmark prints exactly one JSON object on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import json
import os
import resource
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


def _busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all processes), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6, 7) if i < len(fields))  # user nice system irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


_START = (time.perf_counter(), _busy_seconds(), own_cpu_seconds(), os.getloadavg()[0])
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
    """The benchmark's one JSON object, on stdout, with how busy the machine was meanwhile.

    ``other_cpu_seconds`` is CPU time the machine spent on processes other than this benchmark
    during it: well above zero means other work competed for the cores and skewed the timings.
    """
    wall, busy, own, load = _START
    own_now = own_cpu_seconds()
    result = {
        **result,
        "machine": {
            "cpus": os.cpu_count(),
            "wall_seconds": round(time.perf_counter() - wall, 1),
            "own_cpu_seconds": round(own_now - own, 1),
            "other_cpu_seconds": round(max(_busy_seconds() - busy - (own_now - own), 0.0), 1),
            "loadavg_1m_start_end": [round(load, 2), round(os.getloadavg()[0], 2)],
        },
    }
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


def wall_cpu_summary(runs: Sequence[tuple[float, float]], digits: int = 3) -> dict[str, float]:
    """Min and median of ``(wall seconds, CPU seconds)`` rounds."""
    import statistics

    walls, cpus = [w for w, _ in runs], [c for _, c in runs]
    return {
        "wall_s_min": round(min(walls), digits),
        "wall_s_median": round(statistics.median(walls), digits),
        "cpu_s_min": round(min(cpus), digits),
        "cpu_s_median": round(statistics.median(cpus), digits),
    }


def photo_files() -> list[str]:
    """The JPEG files of the data folder's ``images/hymenoptera_train`` (the .gif placeholder left out), sorted."""
    from featurestore import settings

    root = settings.data_dir() / "images" / "hymenoptera_train"
    files = sorted(str(p) for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})
    if not files:
        raise SystemExit(f"bench: no images under {root}")
    return files


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
    seconds, _, stdout = timed_run_cpu(cmd, cwd=cwd)
    return seconds, stdout


def timed_run_cpu(cmd: Sequence[str], *, cwd: str | Path | None = None) -> tuple[float, float, str]:
    """Like :func:`timed_run`, also returning the CPU seconds (user + system) the command used."""
    cpu = own_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.run(list(cmd), cwd=cwd, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} exited with {proc.returncode}")
    return seconds, own_cpu_seconds() - cpu, proc.stdout


def timed_process(cmd: Sequence[str], *, expect: int = 0) -> tuple[float, float]:
    """Wall and CPU seconds of one process, which must exit with ``expect`` (2, a user error: one line on stderr)."""
    cpu = own_cpu_seconds()
    started = time.perf_counter()
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != expect or (expect == 2 and proc.stderr.count("\n") != 1):
        raise SystemExit(f"bench: {' '.join(cmd[:4])} ... exited with {proc.returncode} (expected {expect}): {proc.stderr[-300:]!r}")
    return wall, own_cpu_seconds() - cpu


def last_json(stdout: str) -> dict[str, Any]:
    """The JSON object a command printed (the CLI prints one, possibly indented)."""
    start = stdout.find("{")
    if start < 0:
        raise SystemExit(f"bench: no JSON object in the output: {stdout[-500:]!r}")
    return json.loads(stdout[start:])
