"""Real ``featurestore`` processes for the fault tests: start one, watch its process tree, kill it, check what is left."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
KILLPOINT = Path(__file__).with_name("killpoint.py")
POLL_S = 0.02


def command(*args: object) -> list[str]:
    """``featurestore ARGS`` as a process of its own."""
    return [sys.executable, "-m", "flows.cli.main", *map(str, args)]


def killed_at(pattern: str, *args: object) -> list[str]:
    """``featurestore ARGS``, SIGKILLed just before it renames a name matching ``pattern`` (see killpoint.py)."""
    return [sys.executable, str(KILLPOINT), pattern, *map(str, args)]


def environment(tmp: Path, prefect_home: Path) -> dict[str, str]:
    """The environment of a run: offline, a temporary folder of its own (``TMPDIR``), and Prefect's
    ephemeral server (no API URL: a test harness's server is no child of the run) with its database
    in ``prefect_home``."""
    tmp.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PREFECT_HOME=str(prefect_home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",  # a first start migrates a new database, on a busy machine
        TMPDIR=str(tmp),
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    )
    return env


@dataclass
class Run:
    """A started process, its output files, and every descendant seen while it was watched (by pid)."""

    proc: subprocess.Popen[str]
    logs: Path
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    def output(self) -> tuple[str, str]:
        return (self.logs / "out").read_text(), (self.logs / "err").read_text()

    def watch(self) -> None:
        try:
            self.seen.update({p.pid: p for p in psutil.Process(self.proc.pid).children(recursive=True)})
        except psutil.Error:  # it has just ended
            pass

    def wait_for(self, ready: Callable[[], bool], what: str, timeout_s: float = 180) -> None:
        """Poll until ``ready()``, watching the tree; fails when the run ends first or ``timeout_s`` passes."""
        deadline = time.monotonic() + timeout_s
        while not ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended (exit {self.proc.returncode}) before {what}: {self.output()[1][-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout_s} s")
            self.watch()
            time.sleep(POLL_S)
        self.watch()

    def wait(self, timeout_s: float = 300) -> int:
        """Wait for the end of the run, watching the tree; its exit status."""
        deadline = time.monotonic() + timeout_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"the run did not end within {timeout_s} s")
            self.watch()
            time.sleep(POLL_S)
        return self.proc.returncode

    def commands(self) -> list[str]:
        return [_cmdline(p) for p in self.seen.values()]

    def survivors(self, timeout_s: float) -> dict[int, str]:
        """The descendants seen that still run after ``timeout_s`` (pid -> command line)."""
        return survivors(self.seen, timeout_s)

    def kill(self) -> None:
        """End the run and what is left of its tree: a test never leaves a process behind."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for p in _alive(self.seen).values():
            try:
                p.kill()  # psutil refuses a pid that another process has taken since
            except psutil.Error:
                pass


def start(cmd: list[str], env: dict[str, str], logs: Path) -> Run:
    """Start ``cmd`` with its output in files under ``logs`` (a pipe nobody reads could stall it)."""
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "out", "w") as out, open(logs / "err", "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=env, cwd=ROOT)
    return Run(proc, logs)


def survivors(procs: dict[int, psutil.Process], timeout_s: float) -> dict[int, str]:
    """Those of ``procs`` that still run after ``timeout_s`` (pid -> command line)."""
    deadline = time.monotonic() + timeout_s
    while _alive(procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    return {pid: _cmdline(p) for pid, p in _alive(procs).items()}


def _alive(procs: dict[int, psutil.Process]) -> dict[int, psutil.Process]:
    """The processes still running (the same processes: psutil checks start times; a zombie has ended)."""
    running = {}
    for pid, p in procs.items():
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                running[pid] = p
        except psutil.NoSuchProcess:
            pass
    return running


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())[:200]
    except psutil.Error:
        return "?"
