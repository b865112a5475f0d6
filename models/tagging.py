"""Sequence taggers over word vectors, in the scikit-learn API (the NER task's heads).

``X`` is a list of ``(n_words, dim) float32`` arrays (one per sentence), ``y`` a list of BIO tag
lists; ``predict`` returns tag lists, ``predict_proba`` one ``(n_words, n_classes)`` array per
sentence, ``score`` the entity-level F1 (seqeval's default, conlleval-compatible mode):

- :class:`TokenLogisticRegression`: multinomial logistic regression per word, optionally over a
  window of neighbouring vectors.
- :class:`TorchTokenClassifier`: an MLP over each word's window, or a BiLSTM with an optional
  CRF layer; seeded, early stopping on held-out training sentences; CUDA when present.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from featurestore.errors import DependencyError, InvalidArgumentError
from models.torch_utils import length_batches, require_torch, seeded


def with_context(x: np.ndarray, window: int) -> np.ndarray:
    """Each word's vector followed by its ``window`` neighbours on each side (zeros past the ends)."""
    if window == 0:
        return x
    n, dim = x.shape
    padded = np.zeros((n + 2 * window, dim), dtype=x.dtype)
    padded[window : window + n] = x
    return np.concatenate([padded[window + k : window + k + n] for k in range(-window, window + 1)], axis=1)


def bio_decode(proba: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """The most probable tag sequence that is valid BIO (Viterbi over per-word probabilities).

    Per-word argmax can emit ``I-X`` after ``O`` or after another type, which the scorer reads
    as a spurious or split entity; forbidding those transitions costs nothing at training time.
    """
    if not len(proba):
        return np.zeros(0, np.int64)
    inside = [c[2:] if c.startswith("I-") else None for c in classes]
    allowed = np.array([[kind is None or prev[2:] == kind for kind in inside] for prev in classes])
    step = np.where(allowed, 0.0, -np.inf)
    score = np.log(proba[0] + 1e-12) + np.where([k is None for k in inside], 0.0, -np.inf)
    back = np.zeros(proba.shape, dtype=np.int64)
    for t in range(1, len(proba)):
        candidates = score[:, None] + step
        back[t] = candidates.argmax(axis=0)
        score = candidates.max(axis=0) + np.log(proba[t] + 1e-12)
    path = [int(score.argmax())]
    for t in range(len(proba) - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return np.array(path[::-1], dtype=np.int64)


def entity_f1(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    from seqeval.metrics import f1_score

    return float(f1_score([list(s) for s in y_true], [list(s) for s in y_pred], zero_division=0))


class TokenLogisticRegression(BaseEstimator):
    """Standardised features -> multinomial logistic regression, one decision per word.

    Parameters
    ----------
    context : neighbouring words on each side whose vectors are appended to a word's own.
    C, max_iter : as in :class:`sklearn.linear_model.LogisticRegression` (lbfgs).
    """

    def __init__(self, context: int = 1, C: float = 1.0, max_iter: int = 300) -> None:
        self.context = context
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: Sequence[np.ndarray], y: Sequence[Sequence[str]]) -> TokenLogisticRegression:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.pipeline_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=self.max_iter))
        self.pipeline_.fit(self._flat(X), np.concatenate([np.asarray(t, dtype=object) for t in y]).astype(str))
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X: Sequence[np.ndarray]) -> list[np.ndarray]:
        check_is_fitted(self, "pipeline_")
        proba = self.pipeline_.predict_proba(self._flat(X)) if len(X) else np.zeros((0, len(self.classes_)))
        return np.split(proba, np.cumsum([len(x) for x in X])[:-1])

    def predict(self, X: Sequence[np.ndarray]) -> list[list[str]]:
        return [self.classes_[bio_decode(p, self.classes_)].tolist() for p in self.predict_proba(X)]

    def score(self, X: Sequence[np.ndarray], y: Sequence[Sequence[str]]) -> float:
        return entity_f1(y, self.predict(X))

    def _flat(self, X: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([with_context(np.asarray(x, np.float32), self.context) for x in X])


class TorchTokenClassifier(BaseEstimator):
    """A small torch tagger over frozen word vectors, wrapped in the scikit-learn API.

    Parameters
    ----------
    arch : ``mlp`` (each word's window of vectors -> hidden layer -> tags) or ``bilstm``
        (a bidirectional LSTM over the sentence -> tags).
    context : mlp only: neighbouring words on each side in a word's window.
    crf : bilstm only: decode with a CRF layer (pytorch-crf, learned transitions) instead of
        the constrained BIO decoding of per-word probabilities (:func:`bio_decode`).
    hidden, dropout, lr, weight_decay, batch_size (sentences), max_epochs : the usual.
    patience : epochs without a better held-out F1 before training stops (best weights kept).
    validation_fraction : share of the training sentences held out for early stopping.
    random_state : seeds weights, dropout, shuffling and the held-out slice: training twice
        gives identical weights on the same device.
    device : ``auto`` (CUDA when present), ``cpu`` or ``cuda``.
    """

    def __init__(
        self,
        arch: str = "mlp",
        context: int = 1,
        crf: bool = False,
        hidden: int = 256,
        dropout: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        max_epochs: int = 40,
        patience: int = 4,
        validation_fraction: float = 0.1,
        random_state: int = 0,
        device: str = "auto",
    ) -> None:
        self.arch = arch
        self.context = context
        self.crf = crf
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    # -- scikit-learn API
    def fit(self, X: Sequence[np.ndarray], y: Sequence[Sequence[str]]) -> TorchTokenClassifier:
        torch = require_torch()
        self._check_params()
        self.classes_ = np.array(sorted({t for tags in y for t in tags}))
        index = {c: i for i, c in enumerate(self.classes_)}
        targets = [np.array([index[t] for t in tags], dtype=np.int64) for tags in y]
        rng = np.random.default_rng(self.random_state)
        held = rng.permutation(len(X))[: max(1, round(self.validation_fraction * len(X)))]
        fit_rows = np.setdiff1d(np.arange(len(X)), held)
        flat = np.concatenate([X[i] for i in fit_rows])
        with seeded(torch, self.random_state):
            self.module_ = self._build(flat.shape[1], len(self.classes_))
            self.module_.set_scaling(flat.mean(axis=0), flat.std(axis=0) + 1e-6)
            self.module_.to(self._device())
            optimizer = torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            best, best_state, waited = -1.0, None, 0
            for epoch in range(1, self.max_epochs + 1):
                self.module_.train()
                for rows in length_batches([len(X[i]) for i in fit_rows], self.batch_size, rng):
                    picked = fit_rows[rows]
                    inputs, mask = self._pad([X[i] for i in picked])
                    gold, _ = self._pad([targets[i] for i in picked], dtype=torch.long)
                    optimizer.zero_grad()
                    self.module_.loss(inputs, gold, mask).backward()
                    optimizer.step()
                held_f1 = entity_f1([y[i] for i in held], self.predict([X[i] for i in held]))
                if held_f1 > best:
                    best, best_state, waited, self.best_epoch_ = held_f1, copy.deepcopy(self.module_.state_dict()), 0, epoch
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
            self.module_.load_state_dict(best_state)
        self.best_score_ = best
        self.module_.eval()
        return self

    def predict_proba(self, X: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per word, the softmax of the tag scores (with a CRF: of its emissions, not marginals)."""
        check_is_fitted(self, "module_")
        return [p for p, _ in self._run(X, decode=False)]

    def predict(self, X: Sequence[np.ndarray]) -> list[list[str]]:
        check_is_fitted(self, "module_")
        return [self.classes_[tags].tolist() for _, tags in self._run(X, decode=True)]

    def score(self, X: Sequence[np.ndarray], y: Sequence[Sequence[str]]) -> float:
        return entity_f1(y, self.predict(X))

    # -- what the registry saves (safetensors + JSON), and loads back without unpickling
    def state_tensors(self) -> dict[str, Any]:
        return {k: v.detach().cpu().contiguous() for k, v in self.module_.state_dict().items()}

    def config(self) -> dict[str, Any]:
        return {
            "params": self.get_params(),
            "classes": self.classes_.tolist(),
            "n_features": int(self.module_.mean.shape[0]),
            "best_epoch": int(self.best_epoch_),
            "best_score": float(self.best_score_),
        }

    @classmethod
    def from_state(cls, tensors: dict[str, Any], config: dict[str, Any]) -> TorchTokenClassifier:
        head = cls(**config["params"])
        head._check_params()
        head.classes_ = np.array(config["classes"])
        head.best_epoch_, head.best_score_ = config["best_epoch"], config["best_score"]
        head.module_ = head._build(int(config["n_features"]), len(head.classes_))
        head.module_.load_state_dict(tensors, strict=True)
        head.module_.to(head._device()).eval()
        return head

    # -- internals
    def _check_params(self) -> None:
        if self.arch not in ("mlp", "bilstm"):
            raise InvalidArgumentError(f"arch must be 'mlp' or 'bilstm'. Got {self.arch!r} instead.")
        if self.crf and self.arch != "bilstm":
            raise InvalidArgumentError("crf=True needs arch='bilstm'")
        if not (isinstance(self.context, int) and self.context >= 0):
            raise InvalidArgumentError(f"context must be an int >= 0. Got {self.context!r} instead.")

    def _device(self) -> str:
        torch = require_torch()
        return ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device

    def _build(self, n_features: int, n_classes: int) -> Any:
        return _tagger_class()(n_features, n_classes, self.arch, self.context, self.hidden, self.dropout, self.crf)

    def _pad(self, rows: Sequence[np.ndarray], dtype: Any = None) -> tuple[Any, Any]:
        """A ``(batch, longest, ...)`` tensor on the head's device and its ``(batch, longest)`` mask."""
        torch = require_torch()
        longest = max(len(r) for r in rows)
        out = np.zeros((len(rows), longest, *rows[0].shape[1:]), dtype=rows[0].dtype)
        mask = np.zeros((len(rows), longest), dtype=bool)
        for i, r in enumerate(rows):
            out[i, : len(r)], mask[i, : len(r)] = r, True
        device = self._device()
        return torch.from_numpy(out).to(device, dtype=dtype), torch.from_numpy(mask).to(device)

    def _run(self, X: Sequence[np.ndarray], decode: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per sentence: ``(n_words, n_classes)`` probabilities and, when decoding, the tag indices."""
        torch = require_torch()
        self.module_.eval()
        crf = self.module_.crf if decode else None
        with torch.inference_mode():
            for start in range(0, len(X), 256):
                rows = [np.asarray(x, np.float32) for x in X[start : start + 256]]
                proba = [np.zeros((0, len(self.classes_)), np.float32)] * len(rows)
                paths = [np.zeros(0, np.int64)] * len(rows)
                filled = [i for i, r in enumerate(rows) if len(r)]
                if filled:
                    inputs, mask = self._pad([rows[i] for i in filled])
                    scores = self.module_.emissions(inputs, mask)
                    soft = scores.softmax(dim=-1).cpu().numpy()
                    best = crf.decode(scores, mask=mask) if crf is not None else None
                    for k, i in enumerate(filled):
                        proba[i] = soft[k, : len(rows[i])]
                        if decode:
                            paths[i] = np.asarray(best[k]) if best is not None else bio_decode(proba[i], self.classes_)
                yield from zip(proba, paths)


_TAGGER: Any = None


def _tagger_class() -> Any:
    """The torch module, defined on first use so that importing this file does not import torch."""
    global _TAGGER
    if _TAGGER is not None:
        return _TAGGER
    torch = require_torch()
    nn = torch.nn

    class Tagger(nn.Module):
        """Scale -> (window MLP | BiLSTM) -> tag scores -> (softmax | CRF)."""

        def __init__(self, n_features: int, n_classes: int, arch: str, context: int, hidden: int, dropout: float, crf: bool) -> None:
            super().__init__()
            self.arch, self.context = arch, context if arch == "mlp" else 0
            self.register_buffer("mean", torch.zeros(n_features))
            self.register_buffer("std", torch.ones(n_features))
            self.dropout = nn.Dropout(dropout)
            if arch == "mlp":
                self.body = nn.Sequential(nn.Linear(n_features * (2 * self.context + 1), hidden), nn.GELU(), nn.Dropout(dropout))
                self.out = nn.Linear(hidden, n_classes)
            else:
                self.body = nn.LSTM(n_features, hidden, batch_first=True, bidirectional=True)
                self.out = nn.Linear(2 * hidden, n_classes)
            self.crf = _crf(n_classes) if crf else None

        def set_scaling(self, mean: np.ndarray, std: np.ndarray) -> None:
            self.mean.copy_(torch.from_numpy(mean.astype(np.float32)))
            self.std.copy_(torch.from_numpy(std.astype(np.float32)))

        def emissions(self, x: Any, mask: Any) -> Any:
            x = ((x - self.mean) / self.std) * mask.unsqueeze(-1)
            x = self.dropout(x)
            if self.arch == "mlp":
                if self.context:
                    k = self.context
                    padded = nn.functional.pad(x, (0, 0, k, k))
                    x = torch.cat([padded[:, k + s : k + s + x.shape[1]] for s in range(-k, k + 1)], dim=-1)
                return self.out(self.body(x))
            lengths = mask.sum(dim=1).cpu()
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            states, _ = self.body(packed)
            states, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=x.shape[1])
            return self.out(self.dropout(states))

        def loss(self, x: Any, tags: Any, mask: Any) -> Any:
            scores = self.emissions(x, mask)
            if self.crf is not None:
                return -self.crf(scores, tags, mask=mask, reduction="mean")
            return nn.functional.cross_entropy(scores[mask], tags[mask])

    _TAGGER = Tagger
    return Tagger


def _crf(n_classes: int) -> Any:
    try:
        from torchcrf import CRF
    except ImportError:
        raise DependencyError("crf=True needs pytorch-crf: pip install pytorch-crf") from None
    return CRF(n_classes, batch_first=True)
