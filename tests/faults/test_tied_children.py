"""A child started with ``flows.prefect_server.tied_command`` ends when its parent is killed with SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

from flows.prefect_server import POLL_S
from tests.faults.runs import survivors

PARENT = """
import subprocess, sys, time
from flows.prefect_server import tied_command
child = subprocess.Popen(tied_command("http.server", "--bind", "127.0.0.1", "0"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_tied_child_stops_once_its_parent_is_killed_and_not_before():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        time.sleep(4 * POLL_S)
        assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE  # a live parent keeps it
        assert "http.server" in " ".join(child.cmdline())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert survivors({child.pid: child}, 10) == {}  # SIGTERM within POLL_S; http.server stops at once
    finally:
        parent.kill()
        parent.wait(timeout=30)
        parent.stdout.close()
        if child is not None and child.is_running():
            child.kill()
