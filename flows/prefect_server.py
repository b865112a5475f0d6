"""This process's ephemeral Prefect server, run so that it stops when this process dies, however it dies.

Without ``PREFECT_API_URL``, Prefect runs flows against an ephemeral API server: a uvicorn
subprocess it starts on first use and stops at interpreter exit (``atexit``). A process killed
by a signal runs no exit handlers, so every killed run (``kill -9`` of a materialize, with the
local or the Dask runner) left its server serving on its port. Here the server runs under a
watch, ``python -m flows.prefect_server PARENT_PID uvicorn ...``: a thread in the server process
that sends it SIGTERM (uvicorn's own clean stop) once its parent is gone, and ends it after a
grace period if that stop hangs.

Why a poll of ``os.getppid()`` and not ``prctl(PR_SET_PDEATHSIG)``: the kernel sends the
parent-death signal when the *thread* that forked the child ends, and Prefect starts its server
from whichever thread first needs a client (its event workers run in threads of their own): a
server started from a thread that ends would be killed under a live run. The parent pid changes
only when the parent process is gone, and the poll works on macOS too.

Every place that runs a flow as the process's first use of Prefect calls
:func:`tie_to_this_process` first (the materialize runner, ``train``, refresh, the demo): it imports
Prefect's server module, a few seconds that an inline run or a run with nothing to do does not
pay. ``featurestore serve`` starts its scheduling server itself, with :func:`tied_command`.

Dask's processes need none of this: distributed's nanny holds a pipe to each worker process that
ends the worker as soon as the pipe closes (``distributed.process.AsyncProcess``), and
multiprocessing's resource tracker ends when its pipe does.
"""

from __future__ import annotations

import functools
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
from typing import Any

POLL_S = 0.25  # how often the server looks at its parent: the longest it outlives it before stopping
GRACE_S = 10.0  # how long uvicorn's clean stop may take before the process is ended


def tie_to_this_process() -> None:
    """Make the ephemeral server that Prefect starts in this process (when it starts one) stop with it.

    Installs, without starting it, the server instance Prefect's client takes
    (``SubprocessASGIServer()``, one per process). Idempotent. Does nothing when a Prefect API is
    configured (``PREFECT_API_URL``: a real server, or the test harness's) or when a server of
    Prefect's own is already running (it cannot be tied after the fact).
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    current = SubprocessASGIServer._instances.get(None)
    if isinstance(current, _tied_class()) or (current is not None and current.running):
        return
    SubprocessASGIServer._instances.pop(None, None)  # an idle instance of Prefect's own class
    _tied_class()()  # registers itself as the instance for port None


@functools.cache
def _tied_class() -> type:
    """The server class, made on first use: its base class lives in Prefect's (heavy) server module."""
    from prefect.server.api.server import SubprocessASGIServer

    class TiedASGIServer(SubprocessASGIServer):
        """Prefect's ephemeral server, started under :func:`main`'s watch of this process."""

        def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
            # Prefect 3.8's own command and environment (SubprocessASGIServer._run_uvicorn_command), under the watch.
            import prefect
            from prefect.settings import get_current_settings

            env = {
                **os.environ,
                "PREFECT_UI_ENABLED": "0",
                "PREFECT__SERVER_EPHEMERAL": "1",
                "PREFECT__SERVER_FINAL": "1",
                **get_current_settings().to_environment_variables(exclude_unset=True),
            }
            uvicorn = [
                "--app-dir", str(prefect.__module_path__.parent), "--factory", "prefect.server.api.server:create_app",
                "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "error", "--lifespan", "on",
            ]
            return subprocess.Popen(tied_command("uvicorn", *uvicorn), env=env)

    return TiedASGIServer


def tied_command(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS`` as a child of this process that stops when this process dies (see :func:`main`)."""
    return [sys.executable, "-m", __name__, str(os.getpid()), module, *args]


def main(argv: list[str]) -> None:
    """``PARENT_PID MODULE ARGS...``: run MODULE as ``__main__`` with ARGS while PARENT_PID is this process's parent."""
    parent, module, *args = argv
    if os.getppid() != int(parent):  # the parent died before this process got here
        return
    threading.Thread(target=_stop_when_orphaned, args=(int(parent),), name="featurestore-parent-watch", daemon=True).start()
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def _stop_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os._exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
