"""What a similarity search accepts as queries, checked in the library so that the command line,
the Python API and an HTTP service refuse the same inputs with the same message.

A query that carries nothing to search for (an empty or blank text, an all-zero vector under
cosine, a vector with NaN) would still return k hits, all scoring 0 or NaN: each is refused,
naming the query by its position.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from featurestore.errors import EncoderError, InvalidArgumentError, SchemaMismatchError
from featurestore.sources.content import normalize_text

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
    squared norms (``np.vecdot``, float32: ~2 us a query, where float64 or an ``errstate`` costs
    3-4 us more) clears the usual batch; when a norm is not a positive finite number, the checks
    row by row name the first bad query (a norm that only overflowed, past ~1e19 a value, with
    numpy's warning, or underflowed passes them). ``kind`` and ``values`` (the texts, paths or
    ids given; None for vectors) name the query in the message."""
    norms = np.vecdot(queries, queries).tolist()
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
