"""Named-entity recognition heads on stored token features (CoNLL-2003, BIO tags).

A token view (``materialize ... --granularity token`` of a CoNLL file) holds one row per word
with its sentence's ``entity_id``, ``token_index`` and the word's ``ner_tags``. The heads here
read those rows straight from the store and rebuild each sentence in word order, because a
tagger needs the sequence, not independent rows.

Both heads take a sequence of sentences: ``X`` is a list of ``(n_words, dim) float32`` arrays,
``y`` a list of BIO tag lists, ``predict`` returns tag lists, ``predict_proba`` one
``(n_words, n_classes)`` array per sentence, ``score`` the entity-level F1 (as
sklearn-crfsuite does for sequence labellers):

- :class:`TokenLogisticRegression`: multinomial logistic regression per word, optionally over a
  window of neighbouring vectors.
- :class:`TorchTokenClassifier`: an MLP over each word's window, or a BiLSTM with an optional
  CRF layer; seeded, early stopping on held-out training sentences; CUDA when present.

Evaluation is entity-level with seqeval in its default (conlleval-compatible) mode, the number
CoNLL-2003 results are quoted in; the strict IOB2 F1 is reported beside it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from featurestore.errors import DependencyError, FeatureStoreError
from featurestore.store import FeatureTable, Store
from models.base import LoadedModel, TrainResult

TASK = "ner"
ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")
TOKEN_COLUMNS = ("token_index", "ner_tags")
HEADS = ("torch", "logreg")


# ---------------------------------------------------------------- data
@dataclass
class Sentences:
    """A token view's sentences in word order: ids, per-sentence vectors and BIO tags."""

    ids: list[str]
    vectors: list[np.ndarray]
    tags: list[list[str]]

    def take(self, index: Sequence[int]) -> Sentences:
        return Sentences(*([part[i] for i in index] for part in (self.ids, self.vectors, self.tags)))

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.tags)


def token_table(store: Store, view: str, encoder: str | None = None) -> FeatureTable:
    """The view's table, refused unless it holds token rows with their NER tags."""
    table = store.resolve_table(view, encoder)
    if table.meta.granularity != "token":
        raise FeatureStoreError(
            f"view {view!r} has granularity {table.meta.granularity!r}; NER trains on token rows: "
            "materialize a CoNLL file with --granularity token"
        )
    names = [field.name for field in table.delta().schema().fields]
    missing = [c for c in TOKEN_COLUMNS if c not in names]
    if missing:
        raise FeatureStoreError(
            f"view {view!r} has no {', '.join(missing)} column; it has: {', '.join(names)}. "
            "Materialize a CoNLL file with --keep ner_tags"
        )
    return table


def read_sentences(table: FeatureTable) -> tuple[Sentences, int]:
    """Sentences of the table's latest state, sorted by entity id, and the table version read."""
    frame = table.latest(list(TOKEN_COLUMNS))
    ids = frame.ids.astype(str)
    order = np.lexsort((frame.columns.column("token_index").to_numpy(), ids))
    ids = ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(ids)]))
    vectors = frame.vectors[order]
    tags = np.asarray(frame.columns.column("ner_tags").to_pylist(), dtype=object)[order]
    sentences = Sentences(
        ids=[str(ids[a]) for a, _ in bounds],
        vectors=[vectors[a:b] for a, b in bounds],
        tags=[tags[a:b].tolist() for a, b in bounds],
    )
    return sentences, frame.version


def document_split(ids: Sequence[str], test_size: float, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """Sentence indices of a seeded train/test split that keeps each document on one side.

    Sentences of one news story repeat its names; splitting within a document would score
    memorised names. A CoNLL sentence id is ``DDDDD-SSSS`` (document, position).
    """
    from sklearn.model_selection import GroupShuffleSplit

    groups = [i.rsplit("-", 1)[0] for i in ids]
    if len(set(groups)) < 2:
        raise FeatureStoreError(f"a document-grouped split needs sentences of at least 2 documents; got {len(set(groups))}")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=random_state)
    train, test = next(splitter.split(np.zeros(len(ids)), groups=groups))
    return np.sort(train), np.sort(test)


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


# ---------------------------------------------------------------- metrics
def entity_report(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (seqeval default mode) overall and per type, plus strict F1."""
    from seqeval.metrics import classification_report, f1_score
    from seqeval.scheme import IOB2

    true, pred = [list(s) for s in y_true], [list(s) for s in y_pred]
    per_type = classification_report(true, pred, output_dict=True, zero_division=0)
    overall = per_type.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        per_type.pop(key, None)
    return {
        "mode": "seqeval default (conlleval)",
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "f1": float(overall["f1-score"]),
        "f1_strict": float(f1_score(true, pred, mode="strict", scheme=IOB2, zero_division=0)),
        "per_type": {t: {k.replace("-score", ""): float(v) for k, v in row.items()} for t, row in sorted(per_type.items())},
    }


def _f1(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> float:
    from seqeval.metrics import f1_score

    return float(f1_score([list(s) for s in y_true], [list(s) for s in y_pred], zero_division=0))


# ---------------------------------------------------------------- heads
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
        proba = self.pipeline_.predict_proba(self._flat(X)) if len(X) else np.zeros((0, len(self.classes_)))
        return np.split(proba, np.cumsum([len(x) for x in X])[:-1])

    def predict(self, X: Sequence[np.ndarray]) -> list[list[str]]:
        return [self.classes_[bio_decode(p, self.classes_)].tolist() for p in self.predict_proba(X)]

    def score(self, X: Sequence[np.ndarray], y: Sequence[Sequence[str]]) -> float:
        return _f1(y, self.predict(X))

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
        torch = _torch()
        self._check_params()
        self.classes_ = np.array(sorted({t for tags in y for t in tags}))
        index = {c: i for i, c in enumerate(self.classes_)}
        targets = [np.array([index[t] for t in tags], dtype=np.int64) for tags in y]
        rng = np.random.default_rng(self.random_state)
        held = rng.permutation(len(X))[: max(1, round(self.validation_fraction * len(X)))]
        fit_rows = np.setdiff1d(np.arange(len(X)), held)
        flat = np.concatenate([X[i] for i in fit_rows])
        with _seeded(torch, self.random_state):
            self.module_ = self._build(flat.shape[1], len(self.classes_))
            self.module_.set_scaling(flat.mean(axis=0), flat.std(axis=0) + 1e-6)
            self.module_.to(self._device())
            optimizer = torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            best, best_state, waited = -1.0, None, 0
            for epoch in range(1, self.max_epochs + 1):
                self.module_.train()
                for rows in _batches([len(X[i]) for i in fit_rows], self.batch_size, rng):
                    picked = fit_rows[rows]
                    inputs, mask = self._pad([X[i] for i in picked])
                    gold, _ = self._pad([targets[i] for i in picked], dtype=torch.long)
                    optimizer.zero_grad()
                    self.module_.loss(inputs, gold, mask).backward()
                    optimizer.step()
                held_f1 = _f1([y[i] for i in held], self.predict([X[i] for i in held]))
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
        return [p for p, _ in self._run(X, decode=False)]

    def predict(self, X: Sequence[np.ndarray]) -> list[list[str]]:
        return [self.classes_[tags].tolist() for _, tags in self._run(X, decode=True)]

    def score(self, X: Sequence[np.ndarray], y: Sequence[Sequence[str]]) -> float:
        return _f1(y, self.predict(X))

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
            raise FeatureStoreError(f"arch must be 'mlp' or 'bilstm'. Got {self.arch!r} instead.")
        if self.crf and self.arch != "bilstm":
            raise FeatureStoreError("crf=True needs arch='bilstm'")
        if not (isinstance(self.context, int) and self.context >= 0):
            raise FeatureStoreError(f"context must be an int >= 0. Got {self.context!r} instead.")

    def _device(self) -> str:
        torch = _torch()
        return ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device

    def _build(self, n_features: int, n_classes: int) -> Any:
        return _tagger_class()(n_features, n_classes, self.arch, self.context, self.hidden, self.dropout, self.crf)

    def _pad(self, rows: Sequence[np.ndarray], dtype: Any = None) -> tuple[Any, Any]:
        """A ``(batch, longest, ...)`` tensor on the head's device and its ``(batch, longest)`` mask."""
        torch = _torch()
        longest = max(len(r) for r in rows)
        out = np.zeros((len(rows), longest, *rows[0].shape[1:]), dtype=rows[0].dtype)
        mask = np.zeros((len(rows), longest), dtype=bool)
        for i, r in enumerate(rows):
            out[i, : len(r)], mask[i, : len(r)] = r, True
        device = self._device()
        return torch.from_numpy(out).to(device, dtype=dtype), torch.from_numpy(mask).to(device)

    def _run(self, X: Sequence[np.ndarray], decode: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Per sentence: ``(n_words, n_classes)`` probabilities and, when decoding, the tag indices."""
        torch = _torch()
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


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise DependencyError("the torch NER head needs torch: pip install 'featurestore[text,models]'") from None
    return torch


@contextlib.contextmanager
def _seeded(torch: Any, seed: int) -> Iterator[None]:
    """Seed torch for one fit without touching the caller's RNG state.

    CPU kernels are deterministic for a given thread count; cuDNN's LSTM needs its
    deterministic flag. (``torch.use_deterministic_algorithms`` would import the compiler
    stack, ~9 s, for nothing these layers use.)
    """
    cudnn = torch.backends.cudnn
    was = cudnn.deterministic, cudnn.benchmark
    with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
        torch.manual_seed(seed)
        cudnn.deterministic, cudnn.benchmark = True, False
        try:
            yield
        finally:
            cudnn.deterministic, cudnn.benchmark = was


def _batches(lengths: Sequence[int], size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Batches of positions with similar lengths (little padding), in a seeded random order."""
    order = np.lexsort((rng.random(len(lengths)), np.asarray(lengths)))
    batches = [order[i : i + size] for i in range(0, len(order), size)]
    return [batches[i] for i in rng.permutation(len(batches))]


_TAGGER: Any = None


def _tagger_class() -> Any:
    """The torch module, defined on first use so that importing this file does not import torch."""
    global _TAGGER
    if _TAGGER is not None:
        return _TAGGER
    torch = _torch()
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


# ---------------------------------------------------------------- task API
def make_head(head: str, options: dict[str, Any], random_state: int = 0) -> BaseEstimator:
    """The head named ``head`` with ``options`` as its parameters; unknown ones are refused.

    ``random_state`` seeds the head too when it has randomness (the torch head), so one seed
    given to :func:`train` fixes both the split and the weights.
    """
    if head not in HEADS:
        raise FeatureStoreError(f"head must be one of {', '.join(map(repr, HEADS))}. Got {head!r} instead.")
    cls = TorchTokenClassifier if head == "torch" else TokenLogisticRegression
    known = cls().get_params()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise FeatureStoreError(f"{', '.join(unknown)}: not options of the {head} NER head; it takes: {', '.join(known)}")
    seeded = {"random_state": random_state} if "random_state" in known else {}
    return cls(**seeded, **options)


def train(
    store: Store | str | None,
    view: str,
    encoder: str | None = None,
    *,
    eval_view: str | None = None,
    head: str = "torch",
    test_size: float = 0.2,
    random_state: int = 0,
    **options: Any,
) -> TrainResult:
    """Fit an NER head on ``view``'s token rows and score it on ``eval_view`` (same encoder).

    Without ``eval_view`` the view is split by document (``test_size``, seeded). ``options`` are
    the head's parameters (see :class:`TorchTokenClassifier`, :class:`TokenLogisticRegression`).
    """
    store = store if isinstance(store, Store) else Store(store)
    table = token_table(store, view, encoder)
    model = make_head(head, options, random_state)
    data, version = read_sentences(table)
    manifest: dict[str, Any] = {"view": view, "encoder_id": table.meta.encoder_id, "table_version": version}
    if eval_view is not None:
        eval_table = token_table(store, eval_view, table.meta.encoder_id)
        fit_set, test_set = data, read_sentences(eval_table)[0]
        manifest.update(eval_view=eval_view, eval_table_version=eval_table.version())
    else:
        fit_rows, test_rows = document_split(data.ids, test_size, random_state)
        fit_set, test_set = data.take(fit_rows), data.take(test_rows)
        manifest["split"] = {"kind": "document", "test_size": test_size, "random_state": random_state}
    manifest.update(
        train_sentences=len(fit_set.ids),
        train_tokens=fit_set.n_tokens,
        test_sentences=len(test_set.ids),
        content_hash=_content_hash(fit_set, test_set),
    )
    started = time.perf_counter()
    model.fit(fit_set.vectors, fit_set.tags)
    fit_seconds = time.perf_counter() - started
    report = entity_report(test_set.tags, model.predict(test_set.vectors))
    report["timings"] = {"fit_seconds": round(fit_seconds, 2)}
    metrics = {"f1": report["f1"], "precision": report["precision"], "recall": report["recall"], "f1_strict": report["f1_strict"]}
    metrics.update({f"f1_{t}": report["per_type"][t]["f1"] for t in ENTITY_TYPES if t in report["per_type"]})
    meta = table.meta
    encoders = [{"view": view, "encoder_id": meta.encoder_id, "encoder_ref": meta.encoder_ref, "encoder_options": meta.encoder_options, "dim": meta.dim}]
    params = {"eval_view": eval_view, "head": head, "test_size": test_size, "random_state": random_state, **model.get_params()}
    return TrainResult(TASK, model, metrics, report, manifest, encoders, params)


def _content_hash(*parts: Sentences) -> str:
    """sha256 over sentence ids and tags on each side: equal hashes mean the same labelled split."""
    digest = hashlib.sha256()
    for side in parts:
        for sid, tags in zip(side.ids, side.tags):
            digest.update(f"{sid}\t{' '.join(tags)}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()


def predict(model: LoadedModel, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities in raw texts, with the model's own encoder's words and character spans.

    Per input: ``id``, ``entities`` (``text, type, start, end, score``: ``text == input[start:end]``,
    ``score`` the mean probability of the entity's predicted tags), ``label`` (the number of
    entities found) and ``score`` (the mean probability of every word's predicted tag: how sure
    the tagger is of the whole sentence; 0.0 for a text without words).
    """
    texts = []
    for position, item in enumerate(inputs):
        if not isinstance(item.get("text"), str):
            raise FeatureStoreError(f"input {item.get('id', position)!r} has no 'text'; NER takes {{'id', 'text'}} per input")
        texts.append(item["text"])
    from models.registry import model_encoders

    encoded = model_encoders(model)[0].encode_tokens(texts)
    head = model.head
    probas = head.predict_proba(encoded.vectors)
    tags = head.predict(encoded.vectors)
    return [
        _entities(item.get("id", position), text, spans, sentence_tags, proba, head.classes_)
        for position, (item, text, spans, sentence_tags, proba) in enumerate(zip(inputs, texts, encoded.tokens, tags, probas))
    ]


def _entities(
    item_id: Any, text: str, spans: list[tuple[str, int, int]], tags: list[str], proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    """One prediction: BIO tags -> entities (seqeval's chunking, as scored) with char spans."""
    from seqeval.metrics.sequence_labeling import get_entities

    column = {c: i for i, c in enumerate(classes)}
    tag_proba = proba[np.arange(len(tags)), [column[t] for t in tags]] if tags else np.zeros(0)
    entities = [
        {
            "text": text[spans[first][1] : spans[last][2]],
            "type": kind,
            "start": spans[first][1],
            "end": spans[last][2],
            "score": round(float(tag_proba[first : last + 1].mean()), 4),
        }
        for kind, first, last in get_entities(tags)
    ]
    score = round(float(tag_proba.mean()), 4) if len(tag_proba) else 0.0
    return {"id": item_id, "label": len(entities), "score": score, "entities": entities}
