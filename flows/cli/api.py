"""``featurestore api``: the HTTP service over one store (FastAPI app served by uvicorn)."""

from __future__ import annotations

import os
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
    _serve(host, port, workers, log_level)


def _serve(host: str, port: int, workers: int, log_level: str) -> None:
    """uvicorn in this process (one worker) or its supervisor over ``workers`` processes.

    With several workers the listening socket is made here with ``IPPROTO_TCP``: uvicorn's own
    (``Config.bind_socket``) leaves ``proto`` 0, so asyncio never sets ``TCP_NODELAY`` on the
    connections and every keep-alive request waits ~40 ms for a delayed ACK (uvicorn issue #3149;
    measured here: 2.2 ms with one worker, 45 ms with two).
    """
    import socket

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from featurestore.errors import FeatureStoreError

    if workers == 1:
        uvicorn.run("flows.api:create_app", factory=True, host=host, port=port, log_level=log_level, access_log=False)
        return
    config = uvicorn.Config("flows.api:create_app", factory=True, host=host, port=port, workers=workers, log_level=log_level, access_log=False)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise FeatureStoreError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port or stop what uses it") from None
    sock.set_inheritable(True)
    Multiprocess(config, sockets=[sock]).run()


def register(app: typer.Typer) -> None:
    app.command("api")(api)
