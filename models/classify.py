"""A generic classifier head for a label column of a sentence or image view.

Cross-validation runs on the training set's own folds (deterministic, grouped), then the head
is fitted once more on every row: the metrics describe how the saved head generalises, and the
saved head uses all the data. The shared pieces (out-of-fold probabilities, classification
metrics, encoding raw inputs for ``predict``) live here and serve ``models.spam`` and
``models.image`` too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np

from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.manifest import TrainingManifest
from featurestore.progress import ProgressFn, Steps
from featurestore.store import Store
from featurestore.training import TrainingSet, training_set, training_set_from_manifest
from models import novelty
from models.base import LoadedModel, TrainResult
from models.registry import model_encoders

__all__ = [
    "HeadChoice",
    "choose_head",
    "classification_metrics",
    "cv_steps",
    "head_training_set",
    "lexical_baselines",
    "make_head",
    "out_of_fold_proba",
    "predict",
    "train",
]

HeadKind = Literal["logistic", "mlp", "logistic-cv"]
# logistic-cv: the grid of C over L2-normalised features (unit rows need a weak penalty: 316-1000 won on EfficientNet features).
LOGISTIC_CV_CS = tuple(float(c) for c in np.logspace(-1, 4, 11))
TextHeadKind = Literal["auto", "logistic", "mlp", "logistic-cv", "lexical", "hybrid"]


def train(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    labels: Any = "label",
    label_col: str = "label",
    head: TextHeadKind = "auto",
    class_weight: str | None = None,
    C: float = 1.0,
    hidden: Sequence[int] = (256,),
    split: str = "stratified",
    n_splits: int = 5,
    seed: int = 0,
    as_of: Any = None,
    strict: bool = False,
    extra_encoders: Sequence[str] = (),
    task: str = "classify",
    rebuild: TrainingManifest | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit a head on ``view``'s features for the labels, with ``n_splits``-fold cross-validation.

    ``head``: ``logistic`` (logistic regression, ``class_weight`` "balanced" or None), ``mlp``
    (scikit-learn's MLPClassifier with ``hidden`` layer sizes and early stopping), ``logistic-cv``
    (see :func:`make_head`), ``lexical`` or
    ``hybrid`` (TF-IDF of the raw texts, alone or beside the dense features: :mod:`models.lexical`),
    or ``auto``: the best of logistic, lexical and hybrid by cross-validated macro F1 on the same
    folds (logistic alone when the view gives no raw texts, e.g. an image view). The word and
    character TF-IDF baselines are fitted on the same folds whenever the raw texts are known.
    """
    params = {
        "labels": str(labels) if not hasattr(labels, "columns") else "<DataFrame>",
        "label_col": label_col,
        "head": head,
        "class_weight": class_weight,
        "C": C,
        "hidden": list(hidden),
        "split": split,
        "n_splits": n_splits,
        "seed": seed,
        "extra_encoders": list(extra_encoders),
    }
    from models.lexical import raw_texts, view_source

    estimator = make_head("logistic" if head in ("auto", "lexical", "hybrid") else head, class_weight=class_weight, C=C, hidden=hidden, seed=seed)
    ts = head_training_set(
        rebuild, view, encoder, store=store, labels=labels, label_col=label_col, as_of=as_of, split=split,
        n_splits=n_splits, seed=seed, strict=strict, extra_encoders=extra_encoders,
    )
    texts = raw_texts(ts, view_source(ts, store=store))
    steps = cv_steps(progress, head, ts, texts)

    def macro_f1(proba: np.ndarray, classes: np.ndarray) -> float:
        return classification_metrics(ts.y, classes[proba.argmax(axis=1)], classes)["macro_f1"]

    choice = choose_head(head, ts, texts, estimator, macro_f1, metric="macro_f1", class_weight=class_weight, seed=seed, steps=steps)
    report = classification_metrics(ts.y, choice.classes[choice.proba.argmax(axis=1)], choice.classes)
    metrics = {k: report[k] for k in ("accuracy", "macro_f1", "majority_accuracy")}
    if texts is not None:
        report["baselines"] = lexical_baselines(ts, texts, partial(_classify_scores, ts.y), class_weight=class_weight, seed=seed, steps=steps)
        metrics.update({f"baseline_{_short(name)}macro_f1": b["macro_f1"] for name, b in report["baselines"].items()})
    final = _fit(choice.estimator, choice.X, ts.y)
    steps.tick()
    report.update(rows=len(ts), folds=len(ts.splits()), cv_seconds=round(choice.seconds, 3), warnings=ts.warnings, head_choice=choice.record)
    return TrainResult(task, final, metrics, report, ts.manifest, ts.encoders, params,
                       novelty=novelty.describe(ts.X, seed=seed), choice=choice.record)


def head_training_set(rebuild: TrainingManifest | None, view: str, encoder: str | None, *, store: Store | str | None, **arguments: Any) -> TrainingSet:
    """The set a head trains on: the one ``rebuild`` describes (at its table versions, hashes
    checked), else :func:`featurestore.training.training_set` of ``view`` with ``arguments``."""
    if rebuild is not None:
        return training_set_from_manifest(rebuild, store=store)
    return training_set(view, encoder, store=store, **arguments)


def cv_steps(progress: ProgressFn | None, head: str, ts: TrainingSet, texts: Sequence[str] | None) -> Steps:
    """The steps :func:`choose_head`, :func:`lexical_baselines` and the final fit tick: one per
    fold of each candidate head and of each TF-IDF baseline (when the raw texts are known), then one."""
    from models.lexical import BASELINES

    folds = len(ts.splits())
    return Steps(progress, folds * (len(_candidates(head, texts)) + (len(BASELINES) if texts is not None else 0)) + 1)


def lexical_baselines(
    ts: TrainingSet,
    texts: Sequence[str],
    scores: Callable[[np.ndarray, np.ndarray], dict[str, Any]],
    *,
    class_weight: str | None,
    seed: int = 0,
    steps: Steps | None = None,
) -> dict[str, dict[str, Any]]:
    """Each TF-IDF baseline of :data:`models.lexical.BASELINES` cross-validated on ``ts.splits()``:
    ``scores(proba, classes)`` of its out-of-fold probabilities, with its name and seconds."""
    from models.lexical import BASELINES, baseline_model

    docs = np.asarray(texts, dtype=object)
    out = {}
    for name in BASELINES:
        model = baseline_model(name, class_weight=class_weight, binary=len(np.unique(ts.y)) == 2, seed=seed)
        started = time.perf_counter()
        proba, classes = out_of_fold_proba(model, ts, docs, steps=steps)
        out[name] = {**scores(proba, classes), "name": name, "cv_seconds": round(time.perf_counter() - started, 3)}
    return out


def _classify_scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    report = classification_metrics(y, classes[proba.argmax(axis=1)], classes)
    return {k: report[k] for k in ("accuracy", "macro_f1")}


def _short(baseline: str) -> str:
    """The metric prefix of a baseline: ``""`` for word TF-IDF (``baseline_f1``), ``char_`` for character TF-IDF."""
    return "" if baseline == "tfidf+logistic" else baseline.split("-")[0] + "_"


def make_head(head: HeadKind, *, class_weight: str | None = None, C: float = 1.0, hidden: Sequence[int] = (256,), seed: int = 0) -> Any:
    """An unfitted scikit-learn classifier: features are standardised first (CNN features are not).

    ``logistic-cv`` L2-normalises each row instead and picks ``C`` from ``LOGISTIC_CV_CS`` by
    the log-loss of an inner 5-fold stratified CV on the rows it is fitted on (``C`` is not used;
    inner folds split rows, so rows should be independent, as in the image task's split).
    """
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import Normalizer, StandardScaler

    if class_weight not in (None, "balanced"):
        raise InvalidArgumentError(f"class_weight must be 'balanced' or None. Got {class_weight!r} instead.")
    if head == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=C, class_weight=class_weight, max_iter=5000))
    if head == "logistic-cv":
        search = LogisticRegressionCV(
            Cs=list(LOGISTIC_CV_CS), cv=5, l1_ratios=(0.0,), scoring="neg_log_loss", solver="newton-cg", class_weight=class_weight,
            max_iter=5000, use_legacy_attributes=False,
        )
        return make_pipeline(Normalizer(), search)
    if head == "mlp":
        if class_weight is not None:
            raise InvalidArgumentError("the mlp head has no class weights; use head='logistic' for class_weight='balanced'")
        mlp = MLPClassifier(hidden_layer_sizes=tuple(hidden), early_stopping=True, max_iter=500, random_state=seed)
        return make_pipeline(StandardScaler(), mlp)
    raise InvalidArgumentError(f"head must be 'logistic', 'mlp' or 'logistic-cv'. Got {head!r} instead.")


def out_of_fold_proba(estimator: Any, ts: TrainingSet, X: Any = None, *, steps: Steps | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(n, n_classes) float`` probabilities of each row from the fold that did not train on it, and the classes.

    ``X`` is what the estimator reads, one row per row of ``ts`` (default ``ts.X``; an array of
    texts for a TF-IDF baseline, a :func:`models.lexical.head_input` frame for a text head).
    ``steps`` ticks once per fold.
    """
    X = ts.X if X is None else X
    classes = np.unique(ts.y)
    proba = np.zeros((len(ts), len(classes)))
    for train_index, test_index in ts.splits():
        fitted = _fit(estimator, _rows(X, train_index), ts.y[train_index])
        columns = np.searchsorted(classes, fitted.classes_)
        proba[np.ix_(test_index, columns)] = fitted.predict_proba(_rows(X, test_index))
        if steps is not None:
            steps.tick()
    return proba, classes


@dataclass
class HeadChoice:
    """The head a text task fits, chosen by cross-validation on the training set's own folds."""

    name: str  # logistic, mlp, lexical or hybrid
    estimator: Any  # unfitted
    X: Any  # what it reads for every row of the training set
    proba: np.ndarray  # its out-of-fold probabilities
    classes: np.ndarray
    seconds: float  # its cross-validation
    record: dict[str, Any]  # what the manifest and report keep: each candidate's score, the choice and why


def choose_head(
    head: str,
    ts: TrainingSet,
    texts: Sequence[str] | None,
    dense: Any,
    score: Callable[[np.ndarray, np.ndarray], float],
    *,
    metric: str,
    class_weight: str | None,
    seed: int = 0,
    steps: Steps | None = None,
) -> HeadChoice:
    """Cross-validate the candidate heads on ``ts.splits()`` and keep the best by ``score``.

    ``head`` ``auto`` tries the dense head (``dense``, an unfitted estimator of ``ts.X``), then,
    when the raw ``texts`` are known, the lexical and hybrid heads (:mod:`models.lexical`); the
    highest ``score(proba, classes)`` wins, a tie going to the earlier (the dense head predicts
    from stored vectors alone). Any other ``head`` is that head alone.
    """
    from models.lexical import head_input, make_text_head

    if texts is None and head in ("lexical", "hybrid"):
        raise SourceError(
            f"head {head!r} reads the raw texts, which view {ts.manifest.view!r} does not give: "
            "keep a text column, or materialize it from a text source that is still in place"
        )
    names = _candidates(head, texts)
    binary = len(np.unique(ts.y)) == 2
    candidates: list[dict[str, Any]] = []
    best: HeadChoice | None = None
    for name in names:
        if name in ("lexical", "hybrid"):
            estimator, X = make_text_head(name, ts.X.shape[1], class_weight=class_weight, binary=binary, seed=seed), head_input(ts.X, texts or [])
        else:
            estimator, X = dense, ts.X
        started = time.perf_counter()
        proba, classes = out_of_fold_proba(estimator, ts, X, steps=steps)
        seconds = time.perf_counter() - started
        value = float(score(proba, classes))
        label = _head_name(name, dense)
        candidates.append({"head": label, metric: value, "cv_seconds": round(seconds, 3)})
        if best is None or value > best.record["score"]:
            best = HeadChoice(label, estimator, X, proba, classes, seconds, {"score": value})
    assert best is not None  # names is never empty
    if head != "auto":
        reason = "asked for"
    elif len(candidates) == 1:
        reason = "the only candidate: the view gives no raw texts for the lexical and hybrid heads"
    else:
        ranked = ", ".join(f"{c['head']} {c[metric]:.4f}" for c in candidates)
        reason = f"highest cross-validated {metric} on the same folds ({ranked}; a tie goes to the earlier)"
    best.record = {"asked": head, "chosen": best.name, "metric": metric, "candidates": candidates, "reason": reason}  # candidates in the order tried
    return best


def _candidates(head: str, texts: Sequence[str] | None) -> list[str]:
    """The heads :func:`choose_head` cross-validates: ``auto`` tries the dense head, then (raw texts known) lexical and hybrid."""
    names = ["dense", "lexical", "hybrid"] if head == "auto" else [head]
    return names if texts is not None else names[:1]


def _head_name(name: str, dense: Any) -> str:
    """``dense`` names the dense estimator given: logistic, logistic-cv or mlp."""
    if name != "dense":
        return name
    return {"MLPClassifier": "mlp", "LogisticRegressionCV": "logistic-cv"}.get(type(dense[-1]).__name__, "logistic")


def _rows(X: Any, index: np.ndarray) -> Any:
    return X.iloc[index] if hasattr(X, "iloc") else X[index]


def classification_metrics(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision/recall/F1/support and the confusion matrix (rows: truth)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    precision, recall, f1, support = precision_recall_fscore_support(y, predicted, labels=classes, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, labels=classes, average="macro", zero_division=0)),
        "majority_accuracy": float(support.max() / max(support.sum(), 1)),  # the baseline: always the commonest class
        "per_class": {
            str(c): {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for c, p, r, f, s in zip(classes, precision, recall, f1, support)
        },
        "classes": [str(c) for c in classes],
        "confusion_matrix": confusion_matrix(y, predicted, labels=classes).tolist(),
    }


def predict(model: LoadedModel, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per input: ``id``, ``label`` and ``score`` (the probability of that label).

    Inputs are encoded with the model's own encoders (refused when one is missing or differs);
    an input that cannot be encoded gets ``label`` None and its ``error``; the rest proceed.
    """
    from models.lexical import takes_text

    X, errors = encode_inputs(model, inputs)
    texts = [str(item.get("text") or "") for item in inputs] if takes_text(model.head) else None
    return predict_features(model, X, [item.get("id", i) for i, item in enumerate(inputs)], errors, texts=texts)


def predict_features(
    model: LoadedModel, X: np.ndarray, ids: Sequence[Any], errors: Sequence[str | None] | None = None, *, texts: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Per row of ``X`` (``(n, d) float32``, the head's own features: encoded now or read from
    the store): ``id``, ``label``, ``score``, and ``ood`` / ``ood_distance`` (:mod:`models.novelty`:
    beyond the training data's threshold?); a row with an ``errors`` entry gets that error.

    A lexical or hybrid head also reads each row's raw text (``texts``, one per row).
    """
    from models.lexical import head_input, takes_text

    errors = list(errors) if errors is not None else [None] * len(ids)
    out = [{"id": i, "label": None, "score": None, "error": err} for i, err in zip(ids, errors)]
    good = [i for i, err in enumerate(errors) if err is None]
    text_head = takes_text(model.head)
    if text_head and texts is None:
        raise SourceError(f"model {model.name} v{model.version} reads the raw text beside the features (a lexical or hybrid head); send texts")
    if good:
        rows = head_input(X[good], [texts[i] for i in good]) if text_head and texts is not None else X[good]
        proba = model.head.predict_proba(rows)
        classes = model.head.classes_
        for row, i in enumerate(good):
            best = int(proba[row].argmax())
            out[i].update(label=_plain(classes[best]), score=float(proba[row, best]))
            del out[i]["error"]
    novelty.annotate(model.novelty, X, out, good)
    return out


def encode_inputs(model: LoadedModel, inputs: Sequence[dict[str, Any]]) -> tuple[np.ndarray, list[str | None]]:
    """``(n, d) float32`` features of raw inputs (``text`` or ``path``), one block per encoder, and per input why it failed."""
    encoders = model_encoders(model)
    errors: list[str | None] = [None] * len(inputs)
    blocks = []
    for enc in encoders:
        key = "path" if enc.modality == "image" else "text"
        batch = []
        for i, item in enumerate(inputs):
            if key not in item:
                raise SourceError(f"input {i} ({item.get('id', i)!r}) has no {key!r}; model {model.name} takes {key}s")
            value = item[key] if item[key] is not None else ""
            if key == "text" and not str(value).strip():
                errors[i] = "empty text"
            batch.append(value)
        result = enc.encode_with_stats(batch)
        for i, reason in enumerate(result.errors or []):
            errors[i] = errors[i] or reason
        blocks.append(np.asarray(result.vectors, dtype=np.float32))
    return np.hstack(blocks), errors


def _fit(estimator: Any, X: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.base import clone

    return clone(estimator).fit(X, y)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
