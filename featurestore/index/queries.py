"""Similarity search: what it accepts as queries, checked in the library so that the command line,
the Python API and an HTTP service refuse the same inputs with the same message, and
:func:`search`, the one call that answers them (through the warm handle of :mod:`featurestore.serving`).

A query that carries nothing to search for (an empty or blank text, an all-zero vector under
cosine, a vector with NaN) would still return k hits, all scoring 0 or NaN: each is refused,
naming the query by its position.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.errors import EncoderError, InvalidArgumentError, SchemaMismatchError, StoreError
from featurestore.params import non_negative_int, positive_int
from featurestore.sources.content import normalize_text
from featurestore.vectors import squared_norms

if TYPE_CHECKING:
    from featurestore.index.vector_index import VectorIndex
    from featurestore.serving import SearchResults
    from featurestore.store import Store

SHOWN = 40  # characters of a query text quoted in a message


def check_queries(texts: Any, images: Any, ids: Any, vectors: Any) -> str:
    """Which kind of query was given (``texts``, ``images``, ``ids`` or ``vectors``); refuse none
    or several, an empty batch, a single string where a list belongs, and blank entries."""
    given = [(name, value) for name, value in (("texts", texts), ("images", images), ("ids", ids), ("vectors", vectors)) if value is not None]
    if len(given) != 1:
        raise InvalidArgumentError(f"give exactly one kind of query (text, image, id or vector). Got {', '.join(n for n, _ in given) or 'none'}.")
    [(kind, values)] = given
    if kind == "vectors":
        return kind
    if isinstance(values, (str, bytes, os.PathLike)) or not isinstance(values, Sequence):
        raise InvalidArgumentError(f"{kind} must be a list of strings, one per query. Got {type(values).__name__} {_quote(values)} instead; pass [{_quote(values)}].")
    if not values:
        raise InvalidArgumentError(f"{kind} is empty: give at least one query")
    what = {"texts": "text", "images": "image path", "ids": "id"}[kind]
    for number, value in enumerate(values, 1):
        if not isinstance(value, (str, os.PathLike) if kind == "images" else str):
            raise InvalidArgumentError(f"query {what} {number} of {len(values)} is {type(value).__name__} {_quote(value)}, not a string")
        if not normalize_text(os.fspath(value)):
            raise InvalidArgumentError(f"query {what} {number} of {len(values)} is empty or only whitespace; give something to search for")
    return kind


def query_vectors(vectors: Any, dim: int, encoder_id: str) -> np.ndarray:
    """``(n, dim) float32``, C-contiguous, from an array of query vectors (one vector may be
    1-D); refuse other shapes, non-numbers and an empty array. An array that already is one is
    returned as it is (no copy); :func:`check_vectors` checks the values."""
    if type(vectors) is np.ndarray and vectors.dtype == np.float32 and vectors.ndim == 2 and vectors.shape[1] == dim and vectors.shape[0] and vectors.flags.c_contiguous:
        return vectors
    try:
        array = np.asarray(vectors) if not isinstance(vectors, np.ndarray) else vectors
    except (ValueError, TypeError):  # ragged rows
        raise InvalidArgumentError(f"query vectors must be an array of shape (n, {dim}); rows of different lengths were given") from None
    if array.dtype.kind not in "fiu":
        raise InvalidArgumentError(f"query vectors must be numbers (float32). Got an array of {array.dtype} instead.")
    if array.ndim < 2:
        array = array.reshape(1, -1) if array.ndim == 1 else array.reshape(1, 1)
    if array.ndim != 2 or array.shape[1] != dim:
        raise SchemaMismatchError(
            f"query vectors must have dimension {dim} for {encoder_id}, in an array of shape (n, {dim}). "
            f"Got shape {tuple(np.shape(vectors))} instead."
        )
    if array.shape[0] == 0:
        raise InvalidArgumentError("the query vectors are empty (0 rows): give at least one vector")
    if array.dtype != np.float32:
        with np.errstate(over="ignore", invalid="ignore"):  # a value past float32's range becomes inf: refused by check_vectors
            array = array.astype(np.float32)
    return np.ascontiguousarray(array)  # the same array when it already is (no copy)


def check_vectors(queries: np.ndarray, metric: str, kind: str, values: Any, *, encoder_id: str) -> None:
    """Refuse a query vector holding NaN or an infinite value and, under cosine, the zero
    vector: it has no direction, so every stored vector would score 0. One pass over the rows'
    squared norms (:func:`featurestore.vectors.squared_norms`, float32: FAISS's kernel, where numpy's
    ``vecdot`` costs ~3 us more a query on the warm path, float64 or an ``errstate`` more still)
    clears the usual batch; when a norm is not a positive finite number, the checks
    row by row name the first bad query (a norm that only overflowed, past ~1e19 a value, or
    underflowed passes them). ``kind`` and ``values`` (the texts, paths or
    ids given; None for vectors) name the query in the message."""
    norms = squared_norms(queries)
    if (0.0 < norms[0] < math.inf) if len(norms) == 1 else all(0.0 < s < math.inf for s in norms):
        return
    finite = np.isfinite(queries).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidArgumentError(f"query {describe_query(kind, values, i, len(queries))} holds NaN or infinite values; every value must be a finite number")
    if metric != "cosine":
        return
    nonzero = queries.any(axis=1)
    if not nonzero.all():
        i = int(np.flatnonzero(~nonzero)[0])
        why = ": none of its words is in the encoder's vocabulary" if kind == "texts" else ""
        raise EncoderError(
            f"query {describe_query(kind, values, i, len(queries))} is the zero vector for {encoder_id}{why}, "
            "so every stored vector would score 0; query with other words or another vector"
        )


def describe_query(kind: str, values: Any, i: int, n: int) -> str:
    """How a message names query ``i`` (0-based) of ``n``: ``text 1 of 2 ('free prize')``, ``vector 3 of 5``."""
    what = {"texts": "text", "images": "image", "ids": "id", "vectors": "vector"}[kind]
    return f"{what} {i + 1} of {n}" + ("" if values is None else f" ({_quote(values[i], shorten=kind == 'texts')})")


def _quote(value: Any, *, shorten: bool = True) -> str:
    """``repr`` of a query for a message; a long text is cut (a path or id is shown whole: it must be findable)."""
    text = repr(os.fspath(value) if isinstance(value, os.PathLike) else value)
    return text if not shorten or len(text) <= SHOWN else text[: SHOWN - 4] + "...'"


def search(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    texts: Sequence[str] | None = None,
    images: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    vectors: np.ndarray | None = None,
    k: int = 10,
    where: str | None = None,
    exact_below: int = 20_000,
) -> SearchResults:
    """The ``k`` nearest stored entities for each query, best first, with their kept columns.

    Give exactly one of ``texts``, ``images`` (paths), ``ids`` (stored entities) or ``vectors``
    (``(n, dim) float32``). Queries are encoded with the view's own encoder. ``where`` filters on
    kept columns (``label = 'spam'``); a filtered search returns k results whenever k rows match:
    exact search over the matching rows when they are fewer than ``exact_below``, else the index
    restricted to them (and exact search if the index still returns fewer).
    Answered by this process's warm handle of the view (:func:`featurestore.serving.searcher`):
    the index, the latest state and the encoder load on the first call and stay loaded; a newer
    index generation or table version is picked up by the next call.
    """
    from featurestore.serving import searcher

    check_query(texts=texts, images=images, ids=ids, vectors=vectors, k=k, exact_below=exact_below)
    handle = searcher(view, encoder, store=store)
    return handle.search(texts=texts, images=images, ids=ids, vectors=vectors, k=k, where=where, exact_below=exact_below)


def check_query(
    *,
    texts: Sequence[str] | None = None,
    images: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    vectors: np.ndarray | None = None,
    k: int = 10,
    exact_below: int = 20_000,
    max_k: int | None = None,
    max_queries: int | None = None,
) -> str:
    """Refuse a query before anything loads and return its kind (``texts``, ``images``, ``ids`` or
    ``vectors``): ``k`` a positive int (at most ``max_k``), exactly one kind of query, at least one
    and at most ``max_queries`` queries, no blank entry (:func:`check_queries`). The one check of
    every search path (Python, CLI, HTTP service, which sets the limits)."""
    if type(vectors) is np.ndarray and texts is None and images is None and ids is None and max_queries is None and type(k) is int and 0 < k and (max_k is None or k <= max_k) and type(exact_below) is int and exact_below >= 0:
        return "vectors"  # the usual service query, cleared without the general checks below (which give the same answer)
    positive_int("k", k)
    non_negative_int("exact_below", exact_below)
    if max_k is not None and k > max_k:
        raise StoreError(f"k must be at most {max_k} here. Got {k} instead; page through fewer results per call.")
    kind = check_queries(texts, images, ids, vectors)
    value = {"texts": texts, "images": images, "ids": ids, "vectors": vectors}[kind]
    if kind != "vectors":
        count = len(value)
    else:
        count = (value.shape[0] if value.ndim == 2 else 1) if isinstance(value, np.ndarray) else int(np.atleast_2d(np.asarray(value)).shape[0]) if np.ndim(value) >= 1 else 1
    if max_queries is not None and count > max_queries:
        raise StoreError(f"at most {max_queries} queries per call here. Got {count} {kind}; send them in smaller batches.")
    return kind


def filtered_search(index: VectorIndex, frame: Any, queries: np.ndarray, k: int, where: str, exact_below: int) -> list[list[dict[str, Any]]]:
    """The hits of a ``where``-filtered search: the index restricted to the matching rows when
    they are at least ``exact_below``, else (or when the index returns fewer than k) exact search
    over them; k hits whenever k rows match."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from featurestore.index.filters import matching_rows
    from featurestore.index.tuning import exact_knn
    from featurestore.vectors import prepare

    rows = matching_rows(frame.columns, where)
    if queries.ndim != 2 or queries.shape[1] != index.info.dim:
        index.search(queries, 1)  # raises the dimension error
    results: list[list[tuple[float, int]]] = []
    if len(rows) and len(rows) >= exact_below:
        allowed = pc.is_in(pa.array(index.entity_ids, pa.string()), value_set=pa.array(frame.ids[rows], pa.string()))
        positions = index.positions[np.asarray(allowed, dtype=bool)]
        scores, found = index.search_subset(queries, min(k, len(rows)), positions)
        pairs = [[(s, e) for s, e in zip(row_scores.tolist(), index.entity_at(row_found)) if e is not None]
                 for row_scores, row_found in zip(scores, found)]
        where_of = iter(frame.rows_of([e for query in pairs for _, e in query]).tolist())  # one lookup for every query
        results = [[(s, next(where_of)) for s, _ in query] for query in pairs]
    if not results or any(len(h) < min(k, len(rows)) for h in results):
        results = [[] for _ in range(len(queries))]
        if len(rows):
            scores, found = exact_knn(frame.vectors[rows], prepare(queries, index.info.metric), k, index.info.metric)
            results = [[(s, int(rows[j])) for s, j in zip(row_scores, row_found)] for row_scores, row_found in zip(scores.tolist(), found.tolist())]
    extras = iter(frame.kept(np.array([r for hits in results for _, r in hits], np.int64)))
    return [[{"entity_id": frame.ids[r], "score": round(s, 6), **next(extras)} for s, r in hits] for hits in results]
