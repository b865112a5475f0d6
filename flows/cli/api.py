"""``featurestore api``: the HTTP service over one store (FastAPI app served by uvicorn)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Optional

import typer

from flows.cli.options import BackendOpt, StoreOpt


def api(
    store: Optional[str] = StoreOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (127.0.0.1: this machine only; 0.0.0.0 for every interface)."),
    port: int = typer.Option(8686, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="Server processes sharing the port (each keeps its own warm views)."),
    token_file: Optional[Path] = typer.Option(None, "--token-file", help="A file holding the bearer token every route but /healthz requires (else $FEATURESTORE_API_TOKEN)."),
    max_body: str = typer.Option("16MB", "--max-body", help="Largest request body (413 beyond it)."),
    max_views: int = typer.Option(8, "--max-views", help="Warm views kept per process; the least recently used is dropped."),
    threads: Optional[int] = typer.Option(None, "--threads", help="OpenMP threads per process for FAISS and torch (default: $OMP_NUM_THREADS, else 1; scale with --workers)."),
    log_level: str = typer.Option("warning", "--log-level", help="uvicorn's log level: critical, error, warning, info, debug."),
    pin: bool = typer.Option(True, "--pin/--no-pin", help="With several workers and a CPU for each, keep each worker on a CPU of its own."),
    backend: Optional[str] = BackendOpt,
) -> None:
    """Serve search, online features, embeddings and predictions of one store over HTTP."""
    from featurestore import settings
    from featurestore.errors import FeatureStoreError, SourceError
    from featurestore.store import Store

    if workers < 1 or not 0 < port < 65536 or max_views < 1 or (threads is not None and threads < 1):
        raise FeatureStoreError(
            f"--workers, --max-views and --threads must be at least 1 and --port in 1..65535. "
            f"Got workers={workers}, max_views={max_views}, threads={threads}, port={port}."
        )
    the_store = Store(store)
    if the_store.remote is None and not the_store.views():
        raise FeatureStoreError(f"no store at {the_store.root} (no views in it); materialize a view first or pass --store")
    env_backend = {"FEATURESTORE_ENCODER_BACKEND": settings.encoder_backend(backend.strip().lower())} if backend is not None else {}
    settings.api_max_body(max_body)  # a bad --max-body is a one-line error now, not in every worker
    env = {"FEATURESTORE_HOME": the_store.root, "FEATURESTORE_API_MAX_BODY": max_body, "FEATURESTORE_API_MAX_VIEWS": str(max_views), **env_backend}
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SourceError(f"cannot read the token file {token_file}: {exc.strerror or exc}") from None
        if not token:
            raise SourceError(f"the token file {token_file} is empty; write the token in it")
        env["FEATURESTORE_API_TOKEN"] = token
    # Read by FAISS's and torch's OpenMP when they load (after this): one thread per request keeps
    # concurrent single-query searches from spinning against each other (measured in bench/serve_latency.py).
    env["OMP_NUM_THREADS"] = str(threads) if threads is not None else os.environ.get("OMP_NUM_THREADS", "1")
    os.environ.update(env)  # only once every option is checked: the worker processes build the app from it
    _serve(host, port, workers, log_level, pin=pin)


def _serve(host: str, port: int, workers: int, log_level: str, *, pin: bool = True) -> None:
    """uvicorn in this process (one worker) or its supervisor over ``workers`` processes, each
    listening on its own socket (:class:`_WorkerSocket`) and, with ``pin`` and a CPU for each,
    kept on a CPU of its own (:func:`_supervisor`)."""
    import uvicorn

    if workers == 1:
        uvicorn.run("flows.api:create_app", factory=True, host=host, port=port, log_level=log_level, access_log=False)
        return
    config = uvicorn.Config("flows.api:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=False)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    _supervisor(cpus if pin and workers <= len(cpus) else [])(config, sockets=[_WorkerSocket.bound(host, port)]).run()


def _supervisor(cpus: list[int]) -> type:
    """uvicorn's ``Multiprocess`` supervisor; with ``cpus``, worker k (a replacement too) is kept
    on ``cpus[k]``. Unpinned, the scheduler tends to wake a worker on the CPU of the client that
    sent it a request (loopback wakeups are affine), so two workers of a 2-CPU machine often share
    one CPU while the other idles: with 16 keep-alive connections from ``wrk``, 3,300-3,600 QPS
    with ~0.35 of the 2 CPUs idle, against 4,170 pinned (idle 0.02) and 2,100 for one worker."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def init_processes(self) -> None:
            super().init_processes()
            self._pin()

        def keep_subprocess_alive(self) -> None:  # every 0.5 s: a worker started since is pinned too
            super().keep_subprocess_alive()
            self._pin()

        def _pin(self) -> None:
            for cpu, process in zip(cpus, self.processes):
                pid = process.process.pid
                if pid is not None and pinned.get(cpu) != pid:
                    try:
                        os.sched_setaffinity(pid, {cpu})
                    except OSError:  # the worker ended meanwhile: its replacement is pinned on the next round
                        continue
                    pinned[cpu] = pid

    pinned: dict[int, int] = {}
    return Supervisor


def _listener(host: str, port: int, cls: type[socket.socket] = socket.socket) -> socket.socket:
    """A TCP socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening yet (asyncio's
    ``create_server`` calls ``listen``). Made with ``IPPROTO_TCP``: with ``proto`` 0 (uvicorn's
    own ``Config.bind_socket``) asyncio never sets ``TCP_NODELAY`` on the connections, and every
    keep-alive request waits ~40 ms for a delayed ACK (uvicorn issue #3149; measured here: 2.2 ms
    with one worker, 45 ms with two)."""
    from featurestore.errors import FeatureStoreError

    sock = cls(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FeatureStoreError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or stop what uses it") from None
    return sock


class _WorkerSocket(socket.socket):
    """The socket the supervisor hands to every worker process. Here it is bound and never
    listens (a port in use is refused before any worker starts); each worker unpickles it as a
    socket of its own on the same address (``SO_REUSEPORT``), so the kernel spreads new
    connections over the workers. On one shared socket the first worker to wake accepts every
    connection waiting (asyncio accepts in batches): a client's pool of keep-alive connections
    could all land on one worker while the others idle (measured with 16 connections from
    ``wrk``: 1,760 QPS with all on one of two workers, 3,061 spread). Only processes of the same
    user can join a ``SO_REUSEPORT`` port."""

    @classmethod
    def bound(cls, host: str, port: int) -> "_WorkerSocket":
        return _listener(host, port, cls)  # type: ignore[return-value]

    def __reduce__(self) -> tuple:
        host, port = self.getsockname()[:2]
        return (_listener, (host, port))


def register(app: typer.Typer) -> None:
    app.command("api")(api)
