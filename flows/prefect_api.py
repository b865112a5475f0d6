"""The Prefect API this process's flows report to: one boundary, one line when it cannot be had.

Every flow entry point (materialize, index, train, refresh, demo, the Dask runner) calls
:func:`ensure_api` before its first flow, so a Prefect that cannot start is a
:class:`PrefectUnavailableError` (exit 2, one line naming ``--runner inline`` and
``PREFECT_API_URL``) raised before anything is written, not a traceback from inside a flow.

Which API:

- ``PREFECT_API_URL`` set (environment or Prefect profile): that server. It is asked for its
  health once; an unreachable one is the one-line error.
- otherwise a server for this process only: Prefect's ephemeral API app, started by
  :class:`ProcessServer` the way Prefect's own ``SubprocessASGIServer`` starts it. Unlike
  Prefect's, it

  * keeps its SQLite database in a temporary folder of its own, removed when the process ends.
    Several featurestore processes at once then never lock one database file (Prefect's default
    is ``$PREFECT_HOME/prefect.db`` for every process), and a start-up does not wait on another
    process's migration. The database starts as a copy of an empty, migrated template
    (:func:`template_database`, one per Prefect version under
    :func:`featurestore.settings.cache_dir`), so it does not run Prefect's migrations each time
    (12 s of a 20 s start on a quiet 2-core machine). A user who chose a database
    (``PREFECT_SERVER_DATABASE_CONNECTION_URL``) or ``PREFECT_HOME`` keeps it.
  * waits for start-up by the clock (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``,
    180 s by default from :mod:`flows.prefect_env`: a loaded machine needs more than Prefect's
    20), and stops waiting as soon as the server process exits.
  * writes the server's output to a log in that folder: the server's own messages (such as
    uvicorn's "Application shutdown failed" when it is stopped) never reach the command's
    output, and the last line of the log goes into the error when it does not start.

Run history: the flow runs, logs and artifacts of a per-process server go when the process
ends; each run's record stays in the store (``featurestore report``). To keep Prefect's history
and see it with ``prefect`` commands or the UI, run ``prefect server start`` and set
``PREFECT_API_URL`` (it also serves any number of concurrent commands).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any

from featurestore.errors import FeatureStoreError, PrefectUnavailableError

__all__ = ["ProcessServer", "ensure_api", "quiet_user_errors", "template_database", "wait_healthy"]

HEALTH_TIMEOUT_S = 5.0  # one health request; the server answers in milliseconds once it is up
PORT_ATTEMPTS = 3  # a port another process took between our check and the server's bind
STOP_TIMEOUT_S = 10.0
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b[^:]*: ")  # "sqlalchemy.exc.OperationalError: ..."
_ADVICE = ("run with --runner inline (no Prefect), or set PREFECT_API_URL to a running Prefect server "
           "(prefect server start)")


def ensure_api() -> str:
    """The URL of the Prefect API the next flow reports to, started or checked now.

    Called before a flow (never inside one), so that a failure costs nothing in the store.
    """
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        _check_health(str(configured))
        return str(configured)
    return _SERVER.start()


def quiet_user_errors() -> None:
    """Keep Prefect's run loggers from printing a user error (a :class:`FeatureStoreError`) the command prints itself.

    The commands check their arguments before a flow starts; what only the data can show (labels
    of one class, say) is raised inside a task, and Prefect would log it with its traceback
    before the command's own ``featurestore: error:`` line. The run's state in the API keeps the
    message. Installed by the commands that run flows and exit on the error; not by ``serve``,
    whose console is where a scheduled run's failure is read.
    """
    for name in _RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _UserErrorFilter) for f in logger.filters):
            logger.addFilter(_UserErrorFilter())


_RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")


class _UserErrorFilter(logging.Filter):
    """Drops a run logger's record that carries a FeatureStoreError or names one in a failed state's message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], FeatureStoreError):
            return False
        names = "|".join(sorted({cls.__name__ for cls in _subclasses(FeatureStoreError)}))
        return re.search(rf"\b({names})\b[(:]", record.getMessage()) is None


def _subclasses(cls: type) -> list[type]:
    return [cls, *(sub for child in cls.__subclasses__() for sub in _subclasses(child))]


def _check_health(url: str) -> None:
    """Fail when nothing answers at ``url``; any HTTP answer will do (Prefect Cloud wants a key even for /health)."""
    import httpx

    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S)
    except httpx.TransportError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PrefectUnavailableError(
            f"the Prefect API at PREFECT_API_URL={url} does not answer ({reason}); start that server, unset PREFECT_API_URL "
            "to run a Prefect server per command, or pass --runner inline (no Prefect)"
        ) from None


class ProcessServer:
    """Prefect's ephemeral API app for this process only: own database, wall-clock start, output in a log.

    Once it answers, its URL becomes this process's ``PREFECT_API_URL`` (environment and Prefect's
    global settings), so Prefect's clients, threads and child processes (Dask workers) all use
    it, and none imports Prefect's server code to start another.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url: str | None = None
        self.folder: Path | None = None
        self._log: IO[bytes] | None = None
        self._registered = False

    def start(self) -> str:
        """Start the server and wait until it answers; :class:`PrefectUnavailableError` when it does not."""
        if self.url is not None:  # up already; something (a test harness leaving) may have reset Prefect's settings
            self._publish(self.url)
            return self.url
        from flows.prefect_env import startup_timeout_s

        limit = startup_timeout_s()
        if not self._registered:
            atexit.register(self.stop)
            self._registered = True
        self.folder = Path(tempfile.mkdtemp(prefix="featurestore-prefect-"))
        self._log = (self.folder / "server.log").open("ab")
        try:
            database = _own_database(self.folder, self._log, limit)
            deadline = time.monotonic() + limit
            for _ in range(PORT_ATTEMPTS):
                url = f"http://127.0.0.1:{_free_port()}/api"
                self.process = self._spawn(url, database)
                if wait_healthy(url, self.process, deadline):
                    self._publish(url)
                    return url
                if not self._lost_port():
                    break
            raise PrefectUnavailableError(f"Prefect's API server did not start ({self._failure(limit)}); {_ADVICE}")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, url: str, database: Path | None) -> subprocess.Popen[bytes]:
        """Prefect's own command line for its ephemeral server (SubprocessASGIServer), with our database and log."""
        import prefect
        from prefect.settings import get_current_settings

        env = {
            **os.environ,
            **get_current_settings().to_environment_variables(exclude_unset=True),
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        if database is not None:
            env.update(PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{database}",
                       PREFECT_SERVER_MEMO_STORE_PATH=str(database.with_suffix(".memo.toml")))
        port = url.rsplit(":", 1)[1].split("/")[0]
        from flows.prefect_server import tied_command

        # under a watch of this process: a killed command leaves no server and no database folder behind
        command = tied_command("uvicorn", "--app-dir", str(prefect.__module_path__.parent), "--factory",
                   "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", port,
                   "--log-level", "error", "--lifespan", "on", remove=self.folder)
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    def _publish(self, url: str) -> None:
        import prefect.context

        self.url = url
        os.environ["PREFECT_API_URL"] = url
        prefect.context.refresh_global_settings_context()  # Prefect's documented way to see a changed environment

    def _lost_port(self) -> bool:
        return self.process is not None and self.process.poll() is not None and "address already in use" in self._log_text().lower()

    def _failure(self, limit: float) -> str:
        if self.process is None or self.process.poll() is None:
            return f"no answer within {limit:.0f} s; on a busy machine raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
        return f"it exited with code {self.process.returncode}: {_cause(self._log_text())[:300]}"

    def _log_text(self) -> str:
        if self._log is None or self.folder is None:
            return ""
        self._log.flush()
        return (self.folder / "server.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """Stop the server (its last words stay in its log), then remove its folder and database."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self.url is not None:
            if os.environ.get("PREFECT_API_URL") == self.url:
                del os.environ["PREFECT_API_URL"]
                import prefect.context

                prefect.context.refresh_global_settings_context()
            self.url = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


_SERVER = ProcessServer()


def wait_healthy(url: str, process: subprocess.Popen[Any], deadline: float) -> bool:
    """True once the server at ``url`` answers /health with 200; False when ``process`` exits or ``deadline`` (monotonic) passes.

    By the clock, not by counting polls (Prefect's own wait counts only its sleeps, so a slow
    machine waits far longer than the timeout says).
    """
    import httpx

    with httpx.Client(timeout=HEALTH_TIMEOUT_S) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get(f"{url}/health").status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    return False


def _cause(log: str) -> str:
    """The line of a server log that says why it stopped: its last exception, else its last line."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if _EXCEPTION_LINE.match(line)]
    return (errors or lines or ["no output"])[-1]


def _own_database(folder: Path, log: IO[bytes], limit: float) -> Path | None:
    """This process's database file (a copy of the empty template), or None where the user chose one."""
    from prefect.settings import get_current_settings

    settings = get_current_settings()
    if "connection_url" in settings.server.database.model_fields_set or "home" in settings.model_fields_set:
        return None
    database = folder / "prefect.db"
    template = template_database(log, limit)
    if template is not None:
        shutil.copyfile(template, database)
    return database


def template_database(log: IO[bytes], limit: float) -> Path | None:
    """An empty database at Prefect's newest migration, made once per Prefect version (None: it cannot be made).

    Made under a lock by a child process, then checkpointed to one self-contained file (no
    write-ahead log), so a copy is a complete database. Without it each server migrates its
    own empty file, which is slower but works.
    """
    import prefect

    from featurestore import settings

    folder = settings.cache_dir() / "prefect"
    path = folder / f"empty-{prefect.__version__}.db"
    if path.is_file():
        return path
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{path.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be making it: wait, then use its file
            if not path.is_file():
                _migrate(path, log, limit)
    except (OSError, subprocess.SubprocessError, sqlite3.Error):
        return None
    return path


_MIGRATE = ("import asyncio\nfrom prefect.server.database import provide_database_interface\n"
            "asyncio.run(provide_database_interface().create_db())\n")


def _migrate(path: Path, log: IO[bytes], limit: float) -> None:
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        env = {**os.environ, "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{partial}"}
        subprocess.run([sys.executable, "-c", _MIGRATE], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                       timeout=limit, check=True)
        with contextlib.closing(sqlite3.connect(partial)) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("PRAGMA journal_mode=DELETE")
        os.replace(partial, path)
    finally:
        for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
            leftover.unlink(missing_ok=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
