"""The HTTP service of one store (``featurestore api``): thin routes over the warm handles.

Every route is a few lines over the library: searches, lookups and encodes go through the warm
search handle of the view (:mod:`featurestore.serving`), predictions through the warm heads
(:mod:`models.predictor`). Bodies are JSON, a form (image files uploaded as multipart, beside
the other fields) or one raw image (:func:`_payload`). Errors are the library's one-line messages as JSON
(``{"error": ..., "type": ...}``) with a 4xx code: 404 for an unknown view, model, entity id or
index, 400 for other bad input, 422 for a body of the wrong shape, 401 without the token, 413
over the size limit. The service holds no state beyond caches: several processes (``--workers``,
or replicas on other machines over one ``s3://`` store) serve one store with no coordination;
each notices a newer index generation or table version on its next query.

``create_app()`` without arguments reads its configuration from the environment (see
:mod:`featurestore.settings`), which is how uvicorn's worker processes build it.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from featurestore.errors import DependencyError, FeatureStoreError, NotFoundError
from featurestore.store import Store
from flows.api_guard import Guard, Metrics, error_response

MAX_K = 1000
MAX_QUERIES = 1024
QUICK_QUERIES = 16  # vector, id and lookup requests of up to this many queries are answered on the event loop when their view is warm
MAX_FIELD_BYTES = 1 << 20  # one text field of a multipart form (files are bounded by --max-body only)
LIST_FIELDS = {"texts", "ids", "images"}  # repeated form fields (or query parameters) make the list
JSON_FIELDS = {"vectors": "[[0.1, 0.2, ...]]", "labels": '{"spam": "an advert", "ham": "a message"}'}  # JSON text in a form


# ------------------------------------------------------------------------------ request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchRequest(_Body):
    """Exactly one of ``texts``, ``images`` (base64 of image files), ``ids`` (stored entities) or
    ``vectors`` (each of the view's dimension); ``where`` filters on kept columns."""

    view: str
    encoder: str | None = None
    texts: list[str] | None = None
    images: list[str] | None = None
    ids: list[str] | None = None
    vectors: list[list[float]] | None = None
    k: int = Field(10, strict=True)
    where: str | None = None


class FeaturesRequest(_Body):
    """Entity ids to look up: their stored vectors and kept columns, latest or ``as_of`` a table
    version (an int) or an ISO time."""

    view: str
    encoder: str | None = None
    ids: list[str] = Field(min_length=1, max_length=10_000)
    as_of: int | str | None = None
    vectors: bool = True


class EmbedRequest(_Body):
    """New raw inputs to encode with the view's encoder: ``texts`` or ``images`` (base64)."""

    view: str
    encoder: str | None = None
    texts: list[str] | None = Field(None, max_length=MAX_QUERIES)
    images: list[str] | None = Field(None, max_length=MAX_QUERIES)


class PredictRequest(_Body):
    """Raw ``texts`` or ``images`` (base64), or stored ``ids``; ``version`` default the newest.
    Prediction as is (``@imagenet``, ``@zero-shot``) takes ``k``; ``@zero-shot`` also ``view``
    (whose encoder reads the texts) and ``labels`` (label -> description)."""

    version: int | None = None
    texts: list[str] | None = Field(None, max_length=MAX_QUERIES)
    images: list[str] | None = Field(None, max_length=MAX_QUERIES)
    ids: list[str] | None = Field(None, max_length=MAX_QUERIES)
    view: str | None = None
    encoder: str | None = None
    labels: dict[str, str] | None = None
    k: int | None = Field(None, strict=True)


# ------------------------------------------------------------------------------ the app


def create_app(*, store: str | None = None, token: str | None = None, max_body: int | None = None, max_views: int | None = None) -> FastAPI:
    """The service over ``store`` (default ``$FEATURESTORE_HOME``); ``token``: the bearer token
    every route but ``/healthz`` requires (default ``$FEATURESTORE_API_TOKEN``; None: open)."""
    from featurestore import settings
    from models.predictor import Heads

    the_store = Store(store if store is not None else settings.store_root())
    token = token if token is not None else settings.api_token()
    max_body = max_body if max_body is not None else settings.api_max_body()
    max_views = max_views if max_views is not None else settings.api_max_views()
    heads = Heads(the_store)
    metrics = Metrics(the_store)
    app = FastAPI(title="featurestore", version=_version(), description="Similarity search, online features, embeddings and predictions over one feature store.")
    app.add_middleware(Guard, token=token, max_body=max_body, metrics=metrics)
    app.add_exception_handler(FeatureStoreError, _library_error)
    app.add_exception_handler(HTTPException, _http_error)

    def handle(view: str, encoder: str | None) -> Any:
        from featurestore.serving import searcher

        return searcher(view, encoder, store=the_store, max_views=max_views)

    def warm(view: str, encoder: str | None) -> tuple[Any, Any]:
        """``(on, claimed)``: ``on`` the view's handle when it is loaded and this request did not
        take the freshness check (a query on it reads memory only, so it is answered on the event
        loop: a thread hand-off costs more than a vector or id search); else None, and the query
        goes to a thread, where a load may happen. ``claimed`` the handle whose check this request
        took (one request per check interval), which the thread runs first."""
        from featurestore.serving import loaded_searcher

        found = loaded_searcher(view, encoder, store=the_store)
        if found is None:
            return None, None
        return (None, found) if found.claim_check() else (found, None)

    async def answer(run: Callable[..., dict[str, Any]], on: Any, claimed: Any) -> Response:
        """``run(on)`` on the event loop, else ``run()`` in a thread, after the freshness check
        the request took: it runs even when the request is refused (a stream of bad requests
        cannot hold the check back)."""
        if on is not None:
            return _json(run(on))

        def checked() -> dict[str, Any]:
            if claimed is not None:
                claimed.refresh()
            return run()

        return _json(await run_in_threadpool(checked))

    @app.post("/v1/search", summary="k nearest stored entities of text, image, id or vector queries")
    async def search(request: Request) -> Response:
        body = await _payload(request, SearchRequest)

        def run(on: Any = None) -> dict[str, Any]:
            from featurestore.index.queries import check_query

            vectors = _matrix(body.vectors) if body.vectors is not None else None
            with _images(body.images) as paths:
                query = {"texts": body.texts, "images": paths, "ids": body.ids, "vectors": vectors}
                check_query(**query, k=body.k, max_k=MAX_K, max_queries=MAX_QUERIES)
                searcher = on if on is not None else handle(body.view, body.encoder)
                found = searcher.search(**query, k=body.k, where=body.where, check=on is None)
            return {"view": body.view, "generation": found.generation.to_dict(), "results": list(found)}

        quick = body.where is None and body.texts is None and body.images is None and len(body.vectors or body.ids or ()) <= QUICK_QUERIES
        return await answer(run, *(warm(body.view, body.encoder) if quick else (None, None)))

    @app.post("/v1/features", summary="stored vectors and kept columns of entity ids (online lookup)")
    async def features(request: Request) -> Response:
        body = await _payload(request, FeaturesRequest)

        def run(on: Any = None) -> dict[str, Any]:
            found = (on or handle(body.view, body.encoder)).features(body.ids, as_of=body.as_of, check=on is None)
            if body.vectors:
                for row, vector in zip(found["found"], found["vectors"]):
                    row["vector"] = vector
            del found["vectors"]
            return {"view": body.view, **found}

        return await answer(run, *(warm(body.view, body.encoder) if body.as_of is None and len(body.ids) <= QUICK_QUERIES else (None, None)))

    @app.post("/v1/embed", summary="encode new texts or images with a view's own encoder")
    async def embed(request: Request) -> Response:
        body = await _payload(request, EmbedRequest)

        def run() -> dict[str, Any]:
            if (body.texts is None) == (body.images is None):
                raise HTTPException(422, "give texts or images (one of the two)")
            if body.texts is not None and not body.texts or body.images is not None and not body.images:
                raise HTTPException(422, "nothing to encode; give at least one input")
            view = handle(body.view, body.encoder)
            with _images(body.images) as paths:
                result = view.embed(paths if paths is not None else body.texts or [], modality="image" if paths is not None else "text")
            errors = list(result.errors) if result.errors else [None] * len(result.vectors)
            return {"view": body.view, "encoder_id": view.encoder_id, "dim": int(result.vectors.shape[1]), "vectors": result.vectors, "errors": errors}

        return _json(await run_in_threadpool(run))

    @app.post("/v1/predict/{model}", summary="a registered head (NAME or NAME:VERSION) on raw inputs or stored ids")
    async def predict(model: str, request: Request) -> Response:
        body = await _payload(request, PredictRequest)
        name, _, pinned = model.partition(":")
        if pinned and not pinned.isdigit():
            raise HTTPException(400, f"model {model!r}: the version after ':' must be a number")
        version = int(pinned) if pinned else body.version

        def run() -> dict[str, Any]:
            with _images(body.images) as paths:
                if name.startswith("@"):
                    return _as_is(name[1:], body, paths, the_store)
                extra = [f for f in ("view", "encoder", "labels", "k") if getattr(body, f) is not None]
                if extra:
                    raise HTTPException(422, f"field {extra[0]!r} applies to prediction as is (@imagenet, @zero-shot), not to model {name!r}")
                return heads.predict(name, version=version, texts=body.texts, images=paths, ids=body.ids)

        return _json(await run_in_threadpool(run))

    @app.get("/v1/views", summary="the views of the store: encoder, dimension, index, what this process serves")
    async def views() -> Response:
        return _json(await run_in_threadpool(_views, the_store))

    @app.get("/healthz", summary="liveness (never needs the token)")
    async def healthz() -> Response:
        from featurestore.serving import loaded_searchers

        return _json({"status": "ok", "store": the_store.root, "loaded_views": len(loaded_searchers()), "pid": os.getpid()})

    @app.get("/metrics", summary="Prometheus metrics of this process")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    return app


def _as_is(name: str, body: PredictRequest, paths: list[str] | None, store: Store) -> dict[str, Any]:
    """``@imagenet`` on images, ``@zero-shot`` on texts: the pretrained model's own output."""
    from models import pretrained

    if name == "imagenet":
        if paths is None or body.texts is not None or body.ids is not None:
            raise HTTPException(422, "@imagenet takes images (base64, files of a multipart form, or one image as the body)")
        predictions = pretrained.imagenet(paths, k=5 if body.k is None else body.k)
    elif name == "zero-shot":
        if body.texts is None or body.view is None or body.labels is None:
            raise HTTPException(422, "@zero-shot takes texts, a view (whose encoder reads them) and labels {label: description}")
        predictions = pretrained.zero_shot(body.texts, body.labels, view=body.view, encoder=body.encoder, store=store, k=body.k)
    else:
        raise HTTPException(404, f"no prediction as is called @{name}; there are: {', '.join('@' + n for n in pretrained.AS_IS)}")
    return {"model": f"@{name}", "version": None, "task": name, "predictions": predictions}


def _views(store: Store) -> list[dict[str, Any]]:
    from featurestore.index.lifecycle import index_info
    from featurestore.serving import loaded_searchers

    served = {(h.view, h.encoder_id): h.served_generation() for h in loaded_searchers() if h.store.root == store.root}
    rows = []
    for table in store.tables():
        meta = table.meta
        info = index_info(table, store=store)
        generation = served.get((meta.view, meta.encoder_id))
        rows.append({
            "view": meta.view, "encoder_id": meta.encoder_id, "encoder": meta.encoder_name, "dim": meta.dim,
            "modality": meta.modality, "granularity": meta.granularity, "metric": meta.metric,
            "index": None if info is None else {k: info.get(k) for k in ("factory", "rows", "table_version", "recall_at_10")},
            "served": generation.to_dict() if generation is not None else None,
        })
    return rows


# ------------------------------------------------------------------------------ input and output


async def _payload(request: Request, model: type[_Body]) -> Any:
    """The request body as ``model``: JSON; a form (``multipart/form-data``: image files in the
    field ``images``, repeatable, beside the other fields; or URL-encoded fields); or one raw
    image (``Content-Type: image/*``). Outside a JSON body, fields may also come in the query
    string (``?view=photos&k=5``)."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
        data = await _form(request)
    elif kind.startswith("image/") or kind == "application/octet-stream":
        data = _fields(request.query_params.multi_items())
        data["images"] = [base64.b64encode(await request.body()).decode("ascii")]
    elif kind in ("application/json", ""):
        raw = await request.body()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPException(400, f"the body is not valid JSON ({exc}); send a JSON object such as {{\"view\": \"sms\", \"texts\": [\"free prize\"]}}") from None
        if not isinstance(data, dict):
            raise HTTPException(422, f"the body must be a JSON object of fields. Got {type(data).__name__} instead.")
    else:
        raise HTTPException(415, f"content type {kind!r} is not accepted; send application/json, a form (multipart/form-data with image files as 'images'), or one image as image/*")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise HTTPException(422, _validation_message(exc, model)) from None


async def _form(request: Request) -> dict[str, Any]:
    """A form's fields (and the query string's) as a body: every file of the field
    ``images`` base64-encoded into ``images``, as a JSON body carries them. The size limit holds
    on the bytes uploaded (:class:`~flows.api_guard.Guard`); parts are spooled by Starlette."""
    async with request.form(max_files=MAX_QUERIES, max_fields=MAX_QUERIES + 16, max_part_size=MAX_FIELD_BYTES) as form:
        fields, images = [], []
        for key, value in [*request.query_params.multi_items(), *form.multi_items()]:
            if isinstance(value, str):
                fields.append((key, value))
            elif key != "images":
                raise HTTPException(422, f"file field {key!r} is not accepted; send image files in the form field 'images'")
            else:
                images.append(base64.b64encode(await value.read()).decode("ascii"))
    data = _fields(fields)
    if images:
        if "images" in data:
            raise HTTPException(422, "field 'images' came both as files and as text; send image files only")
        data["images"] = images
    return data


def _fields(items: list[tuple[str, str]]) -> dict[str, Any]:
    """Text fields of a form or query string as body fields: a list field (``texts``, ``ids``,
    ``images``) from every value given, ``vectors`` and ``labels`` as JSON text, a number as a number."""
    values: dict[str, list[str]] = {}
    for key, value in items:
        values.setdefault(key, []).append(value)
    data: dict[str, Any] = {}
    for key, given in values.items():
        if key in LIST_FIELDS:
            data[key] = given
            continue
        if len(given) > 1:
            raise HTTPException(422, f"field {key!r} came {len(given)} times; give it once")
        if key in JSON_FIELDS:
            try:
                data[key] = orjson.loads(given[0])
            except orjson.JSONDecodeError:
                raise HTTPException(422, f"field {key!r} must be JSON text in a form, e.g. {JSON_FIELDS[key]}. Got {given[0][:80]!r} instead.") from None
        else:
            data[key] = _number(given[0])
    return data


def _validation_message(exc: ValidationError, model: type[_Body]) -> str:
    """The first problem of a body in one line: the field, what is wrong, what came."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    if first["type"] == "extra_forbidden":
        return f"field {where!r} is not accepted; fields: {', '.join(model.model_fields)}"
    if first["type"] == "missing":
        return f"field {where!r} is required"
    shown = repr(first.get("input"))
    return f"field {where!r}: {first['msg']}. Got {shown[:80]} instead."


def _number(value: str) -> Any:
    return int(value) if value.lstrip("-").isdigit() else value


def _matrix(rows: list[list[float]]) -> np.ndarray:
    """``(n, dim) float32`` from JSON rows; ragged rows are refused here (the index checks the dimension)."""
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise HTTPException(422, f"the query vectors have different lengths ({', '.join(map(str, sorted(widths)))}); give each the view's dimension")
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), widths.pop() if widths else 0)


@contextmanager
def _images(encoded: list[str] | None) -> Iterator[list[str] | None]:
    """Base64 images written to temporary files (the encoders read files), removed afterwards."""
    if encoded is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="featurestore-api-") as folder:
        paths = []
        for i, text in enumerate(encoded):
            try:
                data = base64.b64decode(text, validate=True)
            except (binascii.Error, ValueError):
                raise HTTPException(422, f"images[{i}] is not base64; send each image file's bytes base64-encoded") from None
            path = Path(folder) / f"image-{i}"
            path.write_bytes(data)
            paths.append(str(path))
        yield paths


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status, media_type="application/json")


async def _library_error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, NotFoundError) else 503 if isinstance(exc, DependencyError) else 400
    return error_response(status, str(exc), type(exc).__name__)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), "RequestError", dict(exc.headers or {}))


def _version() -> str:
    from featurestore import __version__

    return __version__
