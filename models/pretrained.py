"""Prediction as is: a pretrained model's own output, served like a head (no training).

- ``imagenet``: EfficientNet-Lite0's own ImageNet classifier (the ``_fc`` layer shipped in the
  same weights file as the encoder) on the un-normalised 1280-d head features: the top ``k`` of
  ImageNet's 1,000 classes with softmax probabilities.
- ``zero-shot``: texts classified by cosine similarity to label descriptions, texts and
  descriptions both encoded with a view's own encoder (its ``encoder_id``), so the same vectors
  as the view stores: the nearest description's label; ``score`` is a softmax over the cosines
  divided by ``temperature``, ``similarity`` the cosine itself.

Each output row has the shape of a head's prediction (``id``, ``label``, ``score``) plus ``top``,
the ``k`` best labels; an input that cannot be encoded gets ``label`` None and its ``error``.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.serving import ENCODE_LOCK
from featurestore.store import Store
from featurestore.vectors import prepare

__all__ = ["AS_IS", "imagenet", "imagenet_classes", "zero_shot"]

AS_IS = ("imagenet", "zero-shot")
CLASSES_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.txt"
_LABEL_VECTORS: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}
_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """ImageNet-1k's class names in class-index order (see models/data/SOURCE.txt)."""
    return tuple(line.strip() for line in CLASSES_FILE.read_text(encoding="utf-8").splitlines() if line.strip())


@lru_cache(maxsize=1)
def _imagenet_model() -> tuple[Any, np.ndarray, np.ndarray]:
    from featurestore.encoders import get_encoder
    from featurestore.encoders.efficientnet import classifier_weights

    encoder = get_encoder("efficientnet-lite0", normalize=False)
    weights, bias = classifier_weights()
    return encoder, weights, bias


def imagenet(paths: Sequence[str], *, k: int = 5) -> list[dict[str, Any]]:
    """Per image file: the top ``k`` ImageNet labels with their probabilities."""
    _check_k(k, 1000)
    encoder, weights, bias = _imagenet_model()
    names = imagenet_classes()
    with ENCODE_LOCK:  # the network is shared with the search handles of this process
        result = encoder.encode_with_stats(list(paths))
    logits = result.vectors @ weights.T + bias
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    return _rows(proba, names, k, result.errors)


def zero_shot(
    texts: Sequence[str],
    labels: dict[str, str],
    *,
    view: str,
    encoder: str | None = None,
    store: Store | str | None = None,
    k: int | None = None,
    temperature: float = 0.05,
) -> list[dict[str, Any]]:
    """Per text: the label whose description is most similar (cosine, the view's own encoder);
    ``top`` ranks the ``k`` best labels (default all)."""
    from featurestore.serving import searcher

    if len(labels) < 2 or not all(isinstance(d, str) and d.strip() for d in labels.values()):
        raise SourceError("zero-shot needs at least two labels, each with a non-empty description (label=description)")
    if not isinstance(temperature, (int, float)) or temperature <= 0:
        raise InvalidArgumentError(f"temperature must be a positive number. Got {temperature!r} instead.")
    k = len(labels) if k is None else k
    _check_k(k, len(labels))
    handle = searcher(view, encoder, store=store)
    names = tuple(labels)
    descriptions = tuple(labels[name] for name in names)
    key = (handle.encoder_id, descriptions)
    with _LOCK:
        label_vectors = _LABEL_VECTORS.get(key)
    if label_vectors is None:
        label_vectors = prepare(handle.embed(list(descriptions), modality="text").vectors, "cosine")
        with _LOCK:
            _LABEL_VECTORS[key] = label_vectors
    empty = [None if isinstance(t, str) and t.strip() else "empty text" for t in texts]
    result = handle.embed([t if e is None else "-" for t, e in zip(texts, empty)], modality="text")
    cosine = prepare(result.vectors, "cosine") @ label_vectors.T
    logits = cosine / temperature
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    errors = [e or (result.errors[i] if result.errors else None) for i, e in enumerate(empty)]
    rows = _rows(proba, names, k, errors)
    for row, sims in zip(rows, cosine):
        if row.get("label") is not None:
            row["similarity"] = round(float(sims[names.index(row["label"])]), 6)
    return rows


def _rows(proba: np.ndarray, names: Sequence[str], k: int, errors: Sequence[str | None] | None) -> list[dict[str, Any]]:
    out = []
    for i, row in enumerate(proba):
        error = errors[i] if errors else None
        if error:
            out.append({"id": str(i), "label": None, "score": None, "error": error})
            continue
        best = np.argsort(-row)[:k]
        top = [{"label": names[j], "score": round(float(row[j]), 6)} for j in best]
        out.append({"id": str(i), "label": top[0]["label"], "score": top[0]["score"], "top": top})
    return out


def _check_k(k: Any, most: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= most:
        raise InvalidArgumentError(f"k must be an int from 1 to {most} (the number of labels). Got {k!r} instead.")
