"""Serving the project's schedules: one Prefect deployment of ``refresh_flow`` per scheduled view.

Where the schedules run:

- ``PREFECT_API_URL`` set (environment or Prefect profile): the deployments are registered with
  that server, whose scheduler creates the runs; this process executes them.
- otherwise a local Prefect server is started as a child process for as long as ``serve``
  runs (database: the one of ``prefect server start``, under ``PREFECT_HOME``), and stopped
  with it. Not Prefect's ephemeral server: that one runs without its scheduler service
  (``prefect.server.api.server.create_app`` with ``PREFECT__SERVER_EPHEMERAL`` starts only the
  services marked ``run_in_ephemeral``, and ``schedule_deployments`` is not one), so a
  schedule served against it never fires.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from featurestore.errors import FeatureStoreError
from featurestore.project import Project

__all__ = ["deployments", "scheduling_server", "serve"]

SERVER_START_TIMEOUT_S = 120


def deployments(project: Project) -> list[Any]:
    """One deployment per view with a schedule, running ``refresh_flow(config, view)``."""
    from prefect.types.entrypoint import EntrypointType

    from flows.refresh import refresh_flow

    config = str(project.path.absolute())
    made = []
    for view in project.views:
        if view.schedule is None:
            continue
        when: dict[str, Any] = {"interval": view.schedule.interval} if view.schedule.interval else {"cron": view.schedule.cron}
        made.append(refresh_flow.to_deployment(name=f"refresh-{view.name}", parameters={"config": config, "view": view.name},
                                               entrypoint_type=EntrypointType.MODULE_PATH, **when))
    if not made:
        raise FeatureStoreError(f"{project.path}: no view has a schedule; add e.g. `schedule: {{interval: 3600}}` to a view")
    return made


def serve(project: Project, *, limit: int | None = None) -> None:
    """Serve the scheduled refreshes until interrupted (Ctrl-C or SIGTERM), at most ``limit`` runs at once."""
    made = deployments(project)  # before the server starts: a project without schedules fails at once
    with scheduling_server():
        from prefect import serve as prefect_serve

        prefect_serve(*made, limit=limit)


@contextmanager
def scheduling_server() -> Iterator[str]:
    """The API URL of a Prefect server whose scheduler runs: the configured one, else a local child process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    configured = PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    _check_scheduler_dependencies()
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    from flows.prefect_server import tied_command

    process = subprocess.Popen(  # a child that stops when this process dies, however it dies
        tied_command("uvicorn", "--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port),
                     "--log-level", "error", "--lifespan", "on"),
        env={**os.environ, "PREFECT_API_URL": ""},
    )
    try:
        _wait_healthy(url, process)
        os.environ["PREFECT_API_URL"] = url  # the flow runs this process starts inherit it
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _check_scheduler_dependencies() -> None:
    """Refuse SQLAlchemy 2.1: Prefect 3.8's scheduler cannot insert the scheduled runs with it.

    (``_insert_scheduled_flow_runs`` bulk-inserts a model with hybrid properties, which 2.1
    rejects with "Can't evaluate bulk DML statement"): the server would start, and no schedule
    would ever fire.
    """
    import sqlalchemy

    if tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) >= (2, 1):
        raise FeatureStoreError(f"Prefect 3.8's scheduler does not work with SQLAlchemy {sqlalchemy.__version__}: no schedule would fire; "
                                "install sqlalchemy<2.1 (see constraints.txt) or point PREFECT_API_URL at a Prefect server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FeatureStoreError(f"the local Prefect server exited with code {process.returncode}; see its output above")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise FeatureStoreError(f"the local Prefect server did not answer at {url} within {SERVER_START_TIMEOUT_S} s")
