"""A generic classifier head for a label column of a sentence or image view.

Cross-validation runs on the training set's own folds (deterministic, grouped), then the head
is fitted once more on every row: the metrics describe how the saved head generalises, and the
saved head uses all the data. The shared pieces (out-of-fold probabilities, classification
metrics, encoding raw inputs for ``predict``) live here and serve ``models.spam`` and
``models.image`` too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from featurestore.errors import FeatureStoreError, SourceError
from featurestore.training import TrainingSet, training_set
from models import novelty
from models.base import LoadedModel, TrainResult
from models.registry import model_encoders

__all__ = ["classification_metrics", "make_head", "out_of_fold_proba", "predict", "train"]

HeadKind = Literal["logistic", "mlp", "logistic-cv"]
# logistic-cv: the grid of C over L2-normalised features (unit rows need a weak penalty: 316-1000 won on EfficientNet features).
LOGISTIC_CV_CS = tuple(float(c) for c in np.logspace(-1, 4, 11))


def train(
    store: Any,
    view: str,
    encoder: str | None = None,
    *,
    labels: Any = "label",
    label_col: str = "label",
    head: HeadKind = "logistic",
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
) -> TrainResult:
    """Fit a head on ``view``'s features for the labels, with ``n_splits``-fold cross-validation.

    ``head``: ``logistic`` (logistic regression, ``class_weight`` "balanced" or None), ``mlp``
    (scikit-learn's MLPClassifier with ``hidden`` layer sizes and early stopping) or
    ``logistic-cv`` (see :func:`make_head`).
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
    estimator = make_head(head, class_weight=class_weight, C=C, hidden=hidden, seed=seed)
    ts = training_set(
        view, encoder, store=store, labels=labels, label_col=label_col, as_of=as_of, split=split,
        n_splits=n_splits, seed=seed, strict=strict, extra_encoders=extra_encoders,
    )
    started = time.perf_counter()
    proba, classes = out_of_fold_proba(estimator, ts)
    cv_seconds = time.perf_counter() - started
    report = classification_metrics(ts.y, classes[proba.argmax(axis=1)], classes)
    final = _fit(estimator, ts.X, ts.y)
    report.update(rows=len(ts), folds=len(ts.splits()), cv_seconds=round(cv_seconds, 3), warnings=ts.warnings)
    metrics = {k: report[k] for k in ("accuracy", "macro_f1", "majority_accuracy")}
    return TrainResult(task, final, metrics, report, ts.manifest, encoders_of(ts), params, novelty=novelty.describe(ts.X, seed=seed))


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
        raise FeatureStoreError(f"class_weight must be 'balanced' or None. Got {class_weight!r} instead.")
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
            raise FeatureStoreError("the mlp head has no class weights; use head='logistic' for class_weight='balanced'")
        mlp = MLPClassifier(hidden_layer_sizes=tuple(hidden), early_stopping=True, max_iter=500, random_state=seed)
        return make_pipeline(StandardScaler(), mlp)
    raise FeatureStoreError(f"head must be 'logistic', 'mlp' or 'logistic-cv'. Got {head!r} instead.")


def out_of_fold_proba(estimator: Any, ts: TrainingSet) -> tuple[np.ndarray, np.ndarray]:
    """``(n, n_classes) float`` probabilities of each row from the fold that did not train on it, and the classes."""
    classes = np.unique(ts.y)
    proba = np.zeros((len(ts), len(classes)))
    for train_index, test_index in ts.splits():
        fitted = _fit(estimator, ts.X[train_index], ts.y[train_index])
        columns = np.searchsorted(classes, fitted.classes_)
        proba[np.ix_(test_index, columns)] = fitted.predict_proba(ts.X[test_index])
    return proba, classes


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


def encoders_of(ts: TrainingSet) -> list[dict[str, Any]]:
    """The TrainResult ``encoders`` entries: how to rebuild each encoder whose features fed ``X``."""
    keys = ("view", "encoder_id", "encoder_ref", "encoder_options", "dim")
    return [{k: table[k] for k in keys} for table in ts.manifest["tables"]]


def predict(model: LoadedModel, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per input: ``id``, ``label`` and ``score`` (the probability of that label).

    Inputs are encoded with the model's own encoders (refused when one is missing or differs);
    an input that cannot be encoded gets ``label`` None and its ``error``; the rest proceed.
    """
    X, errors = encode_inputs(model, inputs)
    return predict_features(model, X, [item.get("id", i) for i, item in enumerate(inputs)], errors)


def predict_features(model: LoadedModel, X: np.ndarray, ids: Sequence[Any], errors: Sequence[str | None] | None = None) -> list[dict[str, Any]]:
    """Per row of ``X`` (``(n, d) float32``, the head's own features: encoded now or read from
    the store): ``id``, ``label``, ``score``, and ``ood`` / ``ood_distance`` (:mod:`models.novelty`:
    beyond the training data's threshold?); a row with an ``errors`` entry gets that error."""
    errors = list(errors) if errors is not None else [None] * len(ids)
    out = [{"id": i, "label": None, "score": None, "error": err} for i, err in zip(ids, errors)]
    good = [i for i, err in enumerate(errors) if err is None]
    if good:
        proba = model.head.predict_proba(X[good])
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
