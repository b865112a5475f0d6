"""How far inputs lie from a head's training data: the out-of-distribution warning of ``predict``.

A head trained on SMS spam and applied to another site's comments can collapse without a sign.
At training time the sentence and image classifiers (``spam``, ``image``, ``classify``) keep,
beside the head, a description of their training features:

- ``novelty.safetensors``: the L2-normalised training rows (float32; a seeded sample of at most
  :data:`MAX_ROWS` rows), read back with safetensors (no pickle);
- in ``manifest.json`` under ``"novelty"``: the training set's own leave-one-out nearest-neighbour
  cosine distances (each sampled row to its nearest *other* row), their quantiles, and the
  99th percentile as the threshold.

``predict`` then gives each input the cosine distance to its nearest training row
(``ood_distance``, FAISS exact inner-product search) and ``ood``: whether it is beyond the
threshold. Inputs like the training data are beyond it about 1% of the time; a share well above
that (over 10%, and too many to be chance at p < 0.001 under the expected 1%, a binomial tail) is
the warning. Heads saved before this, and NER and ranking heads, have no description: their
``ood`` is None and the summary says ``"recorded": false``.

The file and the manifest entry are untrusted like every file of a model folder: a damaged file,
a wrong shape or dtype, non-finite values or a threshold that is not a number are one
:class:`~featurestore.errors.ModelError` line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["FILE", "Novelty", "annotate", "describe", "load", "save", "summary"]

FILE = "novelty.safetensors"
MAX_ROWS = 20_000  # rows kept: ~30 MB for 384-d features, an exact search of a batch in milliseconds
QUANTILE = 99  # the percentile of the training rows' leave-one-out distances that is the threshold
EXPECTED_SHARE = 1 - QUANTILE / 100  # inputs like the training data beyond the threshold
WARN_SHARE = 0.10  # a share of inputs beyond the threshold above this warns ...
WARN_P = 0.001  # ... when that many beyond it are this unlikely under the expected share
QUANTILES = (50, 90, 95, 99)
_TENSOR = "rows"
_METRIC = "cosine distance to the nearest training row"


@dataclass
class Novelty:
    """The training features of a head, as :func:`predict` compares inputs with them."""

    rows: np.ndarray  # (n, d) float32, L2-normalised (a zero vector stays zero)
    threshold: float  # the QUANTILE-th percentile of the training rows' leave-one-out distances
    quantiles: dict[str, float]
    training_rows: int  # rows of the training set the sample was drawn from
    seed: int = 0
    _index: Any = field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, Any]:
        """The manifest entry: what the file holds and the training set's distance distribution."""
        return {
            "file": FILE,
            "metric": _METRIC,
            "rows": int(self.rows.shape[0]),
            "dim": int(self.rows.shape[1]),
            "training_rows": self.training_rows,
            "seed": self.seed,
            "quantile": QUANTILE,
            "threshold": self.threshold,
            "quantiles": self.quantiles,
        }

    def distances(self, X: np.ndarray) -> np.ndarray:
        """``(n,) float``: each row's cosine distance to its nearest training row (0 for a training row itself)."""
        from featurestore.vectors import prepare

        if self._index is None:
            self._index = _flat_index(self.rows)
        similarity, _ = self._index.search(prepare(X, "cosine"), 1)
        return np.clip(1.0 - similarity[:, 0].astype(np.float64), 0.0, 2.0)


def describe(X: np.ndarray, *, seed: int = 0, max_rows: int = MAX_ROWS) -> Novelty | None:
    """The description of training features ``X`` (``(n, d)``); None with fewer than 2 rows."""
    from featurestore.vectors import prepare

    n = int(X.shape[0])
    if n < 2:
        return None
    keep = np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False)) if n > max_rows else np.arange(n)
    rows = prepare(X[keep], "cosine")
    similarity, neighbours = _flat_index(rows).search(rows, 2)
    own = neighbours[:, 0] == np.arange(len(rows))  # a row finds itself first, unless an identical row ties with it
    nearest_other = np.where(own, similarity[:, 1], similarity[:, 0]).astype(np.float64)
    loo = np.clip(1.0 - nearest_other, 0.0, 2.0)
    quantiles = {str(q): float(np.percentile(loo, q)) for q in QUANTILES} | {"max": float(loo.max())}
    return Novelty(rows=rows, threshold=quantiles[str(QUANTILE)], quantiles=quantiles, training_rows=n, seed=seed)


def save(folder: Path, novelty: Novelty) -> None:
    """Write the rows as ``folder/novelty.safetensors`` (deterministic bytes for the same rows)."""
    from safetensors.numpy import save_file

    save_file({_TENSOR: np.ascontiguousarray(novelty.rows, dtype=np.float32)}, str(folder / FILE))


def load(model: str, folder: Path, manifest: dict[str, Any]) -> Novelty | None:
    """The description a verified version folder records (None: saved without one), checked as
    untrusted data; ``model`` names it in the one-line error."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    from featurestore.errors import ModelError
    from models.headfiles import first_line

    entry = manifest.get("novelty")
    if entry is None:
        return None
    fields = entry if isinstance(entry, dict) else {}
    threshold, quantiles, counts = fields.get("threshold"), fields.get("quantiles"), (fields.get("training_rows"), fields.get("seed"))
    if (not _number(threshold) or not math.isfinite(threshold) or not isinstance(quantiles, dict) or fields.get("file") != FILE
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts)):
        raise ModelError(
            f"{model}: manifest.json's novelty entry is not a training-distance record (file {FILE}, a finite threshold, "
            "quantiles, row counts); retrain it"
        )
    if FILE not in manifest.get("files", {}):
        raise ModelError(f"{model}: manifest.json's novelty entry names {FILE}, which the manifest does not list; retrain it")
    try:
        tensors = load_file(str(folder / FILE))
    except (SafetensorError, OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelError(f"{model}: {FILE} is damaged or not a safetensors file ({first_line(exc)}); retrain it") from None
    rows = tensors.get(_TENSOR)
    dim = _feature_dim(manifest) or fields.get("dim")  # (encoders that are not records are refused when they are rebuilt)
    if set(tensors) != {_TENSOR} or rows is None or rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] != dim:
        shape = "none" if rows is None else f"{rows.dtype} {tuple(rows.shape)}"
        raise ModelError(f"{model}: {FILE} does not hold the training rows the manifest describes (float32 rows x {dim}; it holds {shape}); retrain it")
    if not np.isfinite(rows).all():
        raise ModelError(f"{model}: {FILE} holds values that are not finite numbers; retrain it")
    return Novelty(rows=rows, threshold=float(threshold), quantiles={str(k): v for k, v in quantiles.items()},
                   training_rows=counts[0], seed=counts[1])


def annotate(novelty: Novelty | None, X: np.ndarray, out: list[dict[str, Any]], good: Sequence[int]) -> None:
    """Add ``ood`` and ``ood_distance`` to each prediction in ``out``; the rows ``good`` of ``X``
    were predicted (the others failed to encode: None, as for a head without a description)."""
    for row in out:
        row.update(ood=None, ood_distance=None)
    if novelty is None or not len(good):
        return
    distance = novelty.distances(X[list(good)])
    for i, d in zip(good, distance):
        out[i].update(ood=bool(d > novelty.threshold), ood_distance=round(float(d), 6))


def summary(predictions: Sequence[dict[str, Any]], novelty: Novelty | None) -> dict[str, Any]:
    """The share of predicted inputs beyond the threshold, and the warning when it is well above
    the expected 1%; ``recorded`` False (and None figures) for a head without a description."""
    flags = [p["ood"] for p in predictions if p.get("ood") is not None]
    if novelty is None:
        return {"recorded": False, "threshold": None, "inputs": len(flags), "beyond": None, "share": None,
                "expected_share": None, "warning": None}
    beyond = sum(flags)
    share = beyond / len(flags) if flags else 0.0
    return {
        "recorded": True,
        "threshold": novelty.threshold,
        "inputs": len(flags),
        "beyond": beyond,
        "share": round(share, 6),
        "expected_share": round(EXPECTED_SHARE, 6),
        "warning": _warning(beyond, len(flags)),
    }


def _warning(beyond: int, inputs: int) -> str | None:
    from scipy.stats import binom

    if not inputs or beyond / inputs <= WARN_SHARE or binom.sf(beyond - 1, inputs, EXPECTED_SHARE) >= WARN_P:
        return None
    return (f"{beyond} of {inputs} inputs are farther from the training data than {QUANTILE}% of the training rows are "
            "from each other; the head's predictions may not hold for them")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _feature_dim(manifest: dict[str, Any]) -> int | None:
    """The width of the head's features: the dims of its encoders' blocks, side by side."""
    encoders = manifest.get("encoders")
    dims = [e.get("dim") for e in encoders if isinstance(e, dict)] if isinstance(encoders, list) else []
    return sum(dims) if dims and all(isinstance(d, int) and not isinstance(d, bool) for d in dims) else None


def _flat_index(rows: np.ndarray) -> Any:
    from featurestore.extras import require

    faiss = require("faiss", "index")
    index = faiss.IndexFlatIP(rows.shape[1])
    index.add(rows)
    return index


