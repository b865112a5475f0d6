"""Child processes that stop when this process dies, however it dies: Prefect's API servers.

A process killed by a signal runs no exit handlers, so a killed run (``kill -9`` of a
materialize, with the local or the Dask runner) left its Prefect server serving on its port.
Servers started here (:class:`flows.prefect_api.ProcessServer`, ``featurestore serve``'s
scheduling server) run under a watch, ``python -m flows.prefect_server PARENT_PID [--remove DIR]
MODULE ...``: a thread in the child that sends it SIGTERM (uvicorn's own clean stop) once its
parent is gone, ends it after a grace period if that stop hangs, and removes ``DIR`` (the
server's own temporary database folder) once it has stopped.

Why a poll of ``os.getppid()`` and not ``prctl(PR_SET_PDEATHSIG)``: the kernel sends the
parent-death signal when the *thread* that forked the child ends, and servers may be started
from a thread that ends before the run does. The parent pid changes only when the parent
process is gone, and the poll works on macOS too.

Dask's processes need none of this: distributed's nanny holds a pipe to each worker process that
ends the worker as soon as the pipe closes (``distributed.process.AsyncProcess``), and
multiprocessing's resource tracker ends when its pipe does.
"""

from __future__ import annotations

import os
import runpy
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

POLL_S = 0.25  # how often the child looks at its parent: the longest it outlives it before stopping
GRACE_S = 10.0  # how long uvicorn's clean stop may take before the process is ended


def tied_command(module: str, *args: str, remove: Path | None = None) -> list[str]:
    """``python -m MODULE ARGS`` as a child of this process that stops when this process dies (see :func:`main`).

    ``remove``: a folder the child deletes when it stops because its parent died.
    """
    extra = ["--remove", str(remove)] if remove is not None else []
    return [sys.executable, "-m", __name__, str(os.getpid()), *extra, module, *args]


def main(argv: list[str]) -> None:
    """``PARENT_PID [--remove DIR] MODULE ARGS...``: run MODULE as ``__main__`` while PARENT_PID is the parent."""
    parent, *rest = argv
    remove = None
    if rest[:1] == ["--remove"]:
        remove, rest = Path(rest[1]), rest[2:]
    module, *args = rest
    if os.getppid() != int(parent):  # the parent died before this process got here
        _remove(remove)
        return
    threading.Thread(target=_stop_when_orphaned, args=(int(parent), remove), name="featurestore-parent-watch", daemon=True).start()
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        if os.getppid() != int(parent):
            _remove(remove)


def _stop_when_orphaned(parent: int, remove: Path | None) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    _remove(remove)
    os._exit(1)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
