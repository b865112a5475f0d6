"""What runs around every route of the service: the bearer token, the body size limit and the
Prometheus metrics (a pure ASGI layer, before any route code: no per-request task or body copy)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import Response

from featurestore.store import Store

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def error_response(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> Response:
    """The service's one error shape: ``{"error": <one-line message>, "type": <class>}``."""
    response = Response(orjson.dumps({"error": message, "type": kind}), status_code=status, media_type="application/json")
    response.headers.update(headers or {})
    return response


class Guard:
    """ASGI middleware: the bearer token, the body size limit and the per-route metrics, before
    any route code runs (a pure ASGI layer: no per-request task or copy of the body)."""

    def __init__(self, app: Any, *, token: str | None, max_body: int, metrics: "Metrics") -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, sending)
            else:
                await self.app(scope, self._limited(receive), sending)
        finally:
            route = scope.get("route")
            self.metrics.observe(getattr(route, "path", "unmatched"), scope["method"], status[0], time.perf_counter() - started)

    def _refusal(self, scope: dict[str, Any]) -> Response | None:
        headers = dict(scope["headers"])
        if self.token is not None and scope["path"] != "/healthz":
            given = headers.get(b"authorization", b"")
            scheme, _, value = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(value.strip(), self.token):
                return error_response(401, "this service needs a bearer token: send the header 'Authorization: Bearer <token>'", "RequestError",
                              {"WWW-Authenticate": "Bearer"})
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body:
            return error_response(413, f"the body is {int(length)} bytes; this service takes at most {self.max_body} (split the batch, or start it with a larger --max-body)", "RequestError")
        return None

    def _limited(self, receive: Any) -> Any:
        """``receive`` that refuses a streamed body (no Content-Length) once it passes the limit."""
        seen = [0]

        async def limited() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > self.max_body:
                    raise HTTPException(413, f"the body passed {self.max_body} bytes, the most this service takes; split the batch")
            return message

        return limited


class Metrics:
    """Prometheus metrics of this process: requests and latency per route, and at each scrape the
    loaded views with the index generation and table version each serves."""

    def __init__(self, store: Store) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.store = store
        self.registry = CollectorRegistry()
        self.requests = Counter("featurestore_requests", "HTTP requests by route, method and status.", ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("featurestore_request_seconds", "Request latency by route.", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.registry.register(_ServedCollector(store))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _ServedCollector:
    """What the warm handles serve, read at scrape time (no cost per request)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from featurestore.serving import loaded_searchers

        handles = [h for h in loaded_searchers() if h.store.root == self.store.root]
        loaded = GaugeMetricFamily("featurestore_loaded_views", "Warm view handles in this process.")
        loaded.add_metric([], len(handles))
        index = GaugeMetricFamily("featurestore_index_table_version", "Table version covered by the index generation served.", labels=["view", "encoder_id"])
        table = GaugeMetricFamily("featurestore_table_version", "Table version of the kept columns served.", labels=["view", "encoder_id"])
        swaps = GaugeMetricFamily("featurestore_generation_swaps", "Times a newer generation replaced the one served.", labels=["view", "encoder_id"])
        for handle in handles:
            generation = handle.served_generation()
            if generation is None:
                continue
            labels = [handle.view, handle.encoder_id]
            index.add_metric(labels, generation.index_version)
            table.add_metric(labels, generation.table_version)
            swaps.add_metric(labels, handle.swaps)
        yield from (loaded, index, table, swaps)
