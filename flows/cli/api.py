"""``featurestore api``: the HTTP service over one store (FastAPI app served by uvicorn)."""

from __future__ import annotations

import os
import socket
import sys
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
    pin: Optional[bool] = typer.Option(None, "--pin/--no-pin", show_default="when the workers' threads fill the CPUs", help="Keep each worker on CPUs of its own (--threads of them; Linux, several workers)."),
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
    _serve(host, port, workers, log_level, pin=pin, threads=_leading_int(env["OMP_NUM_THREADS"]))


def _leading_int(text: str) -> int:
    """OMP_NUM_THREADS's first level (``4`` of ``4,2``), at least 1."""
    head = text.split(",")[0].strip()
    return max(int(head), 1) if head.isdigit() else 1


def _serve(host: str, port: int, workers: int, log_level: str, *, pin: bool | None = None, threads: int = 1) -> None:
    """uvicorn in this process (one worker) or its supervisor over ``workers`` processes: on
    Linux each listening on its own socket (:class:`_WorkerSocket`) and, with ``pin`` (None:
    when the workers' ``threads`` fill the CPUs this process may use), kept on ``threads`` CPUs
    of its own (:func:`_supervisor`)."""
    import uvicorn

    if workers == 1:
        uvicorn.run("flows.api:create_app", factory=True, host=host, port=port, log_level=log_level, access_log=False)
        return
    config = uvicorn.Config("flows.api:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=False)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    fits = workers * threads <= len(cpus)
    pinned = [cpus[k * threads : (k + 1) * threads] for k in range(workers)] if (fits if pin else pin is None and workers * threads == len(cpus)) else []
    _supervisor(pinned)(config, sockets=[_WorkerSocket.bound(host, port)]).run()


PER_WORKER_SOCKETS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")  # Linux balances SO_REUSEPORT listeners


def _listener(host: str, port: int, cls: type[socket.socket] = socket.socket, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port`` (with ``SO_REUSEPORT`` when asked), not listening yet
    (asyncio's ``create_server`` calls ``listen``). Made with ``IPPROTO_TCP``: with ``proto`` 0
    (uvicorn's own ``Config.bind_socket``) asyncio never sets ``TCP_NODELAY`` on the
    connections, and every keep-alive request waits ~40 ms for a delayed ACK (uvicorn issue
    #3149; measured here: 2.2 ms with one worker, 45 ms with two)."""
    from featurestore.errors import FeatureStoreError

    sock = cls(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FeatureStoreError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or stop what uses it") from None
    return sock


class _WorkerSocket(socket.socket):
    """The socket the supervisor hands to every worker process. On Linux it is bound here and
    never listens, and each worker unpickles it as a socket of its own on the same address
    (``SO_REUSEPORT``), so the kernel spreads new connections over the workers. On one shared
    socket the first worker to wake accepts every connection waiting (asyncio accepts in
    batches): a client's pool of keep-alive connections could all land on one worker while the
    others idle (measured with 16 connections from ``wrk``: 1,760 QPS with all on one of two
    workers, 3,061 spread). Elsewhere it is that one shared socket, as uvicorn makes it.

    Before binding, the address is taken once without ``SO_REUSEPORT``: a port held by anything
    else (another service's workers included, which would otherwise share it silently) is
    refused in one line before any worker starts. Connections still waiting in a worker's
    accept queue when it ends are reset (Linux moves them only with ``net.ipv4.tcp_migrate_req``)."""

    @classmethod
    def bound(cls, host: str, port: int) -> socket.socket:
        if not PER_WORKER_SOCKETS:
            return _listener(host, port)
        _listener(host, port).close()  # the port is free: nothing else, reuseport or not, holds it
        return _listener(host, port, cls, reuse_port=True)

    def __reduce__(self) -> tuple:
        return (_worker_listener, (self.family, self.getsockname()))


def _worker_listener(family: int, address: tuple) -> socket.socket:
    """A worker's own ``SO_REUSEPORT`` socket on the supervisor's address (the whole
    ``getsockname()``: an IPv6 scope id too). A failure ends the worker with uvicorn's
    start-up failure code, which stops the supervisor instead of restarting it forever."""
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        sys.stderr.write(f"featurestore: error: a worker cannot listen on {address[0]}:{address[1]} ({exc.strerror or exc})\n")
        raise SystemExit(3) from None  # uvicorn's STARTUP_FAILURE
    return sock


def _supervisor(cpus: list[list[int]]) -> type:
    """uvicorn's ``Multiprocess`` supervisor; with ``cpus``, worker k (a replacement too, within
    0.5 s) is kept on ``cpus[k]``, every thread of it. Unpinned, the scheduler tends to wake a
    worker on the CPU of the client that sent it a request (loopback wakeups are affine), so two
    workers of a 2-CPU machine often share one CPU while the other idles: with 16 keep-alive
    connections from ``wrk``, 3,300-3,600 QPS with ~0.35 of the 2 CPUs idle, against 4,170-4,500
    pinned (idle 0.02) and 2,100 for one worker."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def init_processes(self) -> None:
            super().init_processes()
            self._pin()

        def keep_subprocess_alive(self) -> None:  # every 0.5 s: a worker started since is pinned too
            super().keep_subprocess_alive()
            self._pin()

        def _pin(self) -> None:
            for k, (where, process) in enumerate(zip(cpus, self.processes)):
                pid = process.process.pid
                if pid is None or pinned.get(k) == pid:
                    continue
                try:
                    for task in os.listdir(f"/proc/{pid}/task"):  # the threads it has started so far; later ones inherit
                        os.sched_setaffinity(int(task), where)
                except OSError:  # the worker (or a thread) ended meanwhile: its replacement is pinned on the next round
                    continue
                pinned[k] = pid

    pinned: dict[int, int] = {}
    return Supervisor


def register(app: typer.Typer) -> None:
    app.command("api")(api)
