"""Spam: logistic regression with balanced class weights on sentence features.

Evaluated by 5-fold cross-validation grouped by exact text (the SMS collection repeats messages;
a repeat on both sides of a split would inflate every number). Beside it, a TF-IDF + logistic
regression baseline trained from scratch on the raw texts of the same folds, so the report
shows what the stored embeddings add over bag-of-words.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from featurestore.errors import SourceError
from featurestore.sources import TextSource
from featurestore.training import TrainingSet, training_set
from models import novelty
from models.base import TrainResult
from models.classify import (
    classification_metrics,
    encoders_of,
    make_head,
    out_of_fold_proba,
    predict,
)

__all__ = ["binary_metrics", "predict", "tfidf_baseline", "train"]

PR_POINTS = 101
BASELINE_C = 10.0  # TF-IDF features are sparse and many: weaker regularisation than the default fits them best


def train(
    store: Any,
    view: str,
    encoder: str | None = None,
    *,
    labels: Any = "label",
    label_col: str = "label",
    positive: str = "spam",
    C: float = 1.0,
    split: str = "text",
    n_splits: int = 5,
    seed: int = 0,
    texts: TextSource | None = None,
    as_of: Any = None,
    strict: bool = False,
    extra_encoders: Sequence[str] = (),
) -> TrainResult:
    """Fit the spam head with cross-validated metrics of the ``positive`` class and the TF-IDF baseline.

    The baseline needs the raw texts: a kept ``text`` column of the view, else ``texts`` (the
    source the view was materialized from; each text must hash to the stored content_hash).
    Without either, the report says the baseline was skipped.
    """
    params = {"labels": "<DataFrame>" if hasattr(labels, "columns") else str(labels), "label_col": label_col, "positive": positive,
              "C": C, "split": split, "n_splits": n_splits, "seed": seed,
              "extra_encoders": list(extra_encoders)}
    ts = training_set(
        view, encoder, store=store, labels=labels, label_col=label_col, as_of=as_of, split=split,
        n_splits=n_splits, seed=seed, strict=strict, extra_encoders=extra_encoders,
    )
    if positive not in set(ts.y.tolist()):
        raise SourceError(f"positive class {positive!r} is not among the labels ({', '.join(map(str, np.unique(ts.y)))}); pass positive=")
    head = make_head("logistic", class_weight="balanced", C=C, seed=seed)
    started = time.perf_counter()
    proba, classes = out_of_fold_proba(head, ts)
    seconds = time.perf_counter() - started
    report = binary_metrics(ts.y, proba[:, list(classes).index(positive)], classes, positive)
    report.update(rows=len(ts), folds=len(ts.splits()), cv_seconds=round(seconds, 3), warnings=ts.warnings)
    raw = raw_texts(ts, texts if texts is not None else _view_source(store, ts))
    report["baseline"] = tfidf_baseline(ts, raw, positive) if raw is not None else {"skipped": "no raw texts: keep a text column or pass texts="}
    metrics = {k: report[k] for k in ("f1", "precision", "recall", "roc_auc", "average_precision", "accuracy")}
    if "f1" in report["baseline"]:
        metrics["baseline_f1"] = report["baseline"]["f1"]
    final = head.fit(ts.X, ts.y)
    return TrainResult("spam", final, metrics, report, ts.manifest, encoders_of(ts), params, novelty=novelty.describe(ts.X, seed=seed))


def binary_metrics(y: np.ndarray, score: np.ndarray, classes: np.ndarray, positive: str) -> dict[str, Any]:
    """F1/precision/recall of ``positive`` at 0.5, ROC-AUC, average precision and PR curve points."""
    from sklearn.metrics import (
        average_precision_score,
        precision_recall_curve,
        roc_auc_score,
    )

    truth = y == positive
    negative = classes[classes != positive][0] if len(classes) == 2 else f"not {positive}"
    predicted = np.where(score >= 0.5, positive, negative)
    report = classification_metrics(np.where(truth, positive, negative), predicted, np.array(sorted({positive, negative})))
    ours = report["per_class"][positive]
    precision, recall, thresholds = precision_recall_curve(truth, score)
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(PR_POINTS, len(thresholds))).astype(int))
    report.update(
        f1=ours["f1"],
        precision=ours["precision"],
        recall=ours["recall"],
        roc_auc=float(roc_auc_score(truth, score)),
        average_precision=float(average_precision_score(truth, score)),
        pr_curve=[{"threshold": float(thresholds[i]), "precision": float(precision[i]), "recall": float(recall[i])} for i in keep],
    )
    return report


def tfidf_baseline(ts: TrainingSet, texts: list[str], positive: str, *, C: float = BASELINE_C) -> dict[str, Any]:
    """TF-IDF (word 1-2 grams, sublinear tf) + balanced logistic regression, fitted per fold from scratch."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = np.asarray(texts, dtype=object)
    score = np.zeros(len(ts))
    started = time.perf_counter()
    for train_index, test_index in ts.splits():
        model = make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
            LogisticRegression(C=C, class_weight="balanced", solver="liblinear"),
        )
        model.fit(docs[train_index], ts.y[train_index])
        score[test_index] = model.predict_proba(docs[test_index])[:, list(model.classes_).index(positive)]
    seconds = time.perf_counter() - started
    result = binary_metrics(ts.y, score, np.unique(ts.y), positive)
    return {k: result[k] for k in ("f1", "precision", "recall", "roc_auc", "average_precision", "accuracy")} | {
        "name": "tfidf+logistic",
        "cv_seconds": round(seconds, 3),
    }


def _view_source(store: Any, ts: TrainingSet) -> TextSource | None:
    """The text source the view was materialized from (its run record), or None when it is unknown or gone."""
    from featurestore.errors import StoreError
    from featurestore.store import Store

    table = ts.manifest["tables"][0]
    try:
        source = (store if isinstance(store, Store) else Store(store)).view_source(table["view"], table["encoder_id"])
    except StoreError:
        return None
    return source if isinstance(source, TextSource) else None


def raw_texts(ts: TrainingSet, source: TextSource | None) -> list[str] | None:
    """The raw text of each row: the view's kept ``text`` column, else read from ``source`` and
    checked against the stored content hashes (the baseline must see the texts that were encoded)."""
    if "text" in ts.columns.columns:
        return ts.columns["text"].astype(str).tolist()
    if source is None:
        return None
    by_id: dict[str, tuple[str, str]] = {}
    for batch in source.batches():
        by_id.update(zip(batch.entity_id, zip(batch.content, batch.content_hash)))
    texts = []
    for entity, digest in zip(ts.ids.tolist(), ts.columns["content_hash"].tolist()):
        text, have = by_id.get(entity, (None, None))
        if have != digest:
            state = "is not in" if text is None else "has another text in"
            raise SourceError(f"entity {entity!r} {state} {source.path} than the one stored; pass the source the view was materialized from")
        texts.append(text)
    return texts

