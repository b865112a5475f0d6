"""Spam: a balanced logistic regression on sentence features, the raw text's n-grams, or both.

Evaluated by 5-fold cross-validation grouped by exact text (the SMS collection repeats messages;
a repeat on both sides of a split would inflate every number). The head is chosen on those folds
(``head="auto"``): the dense features alone, word and character TF-IDF of the raw text
(``lexical``), or both in one model (``hybrid``, :mod:`models.lexical`), whichever has the highest
F1 of the positive class. Beside it, the word and character TF-IDF + logistic regression
baselines trained from scratch on the raw texts of the same folds, so the report shows what the
stored embeddings add over bag-of-words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from featurestore.errors import SourceError
from featurestore.manifest import TrainingManifest
from featurestore.progress import ProgressFn
from featurestore.sources import TextSource
from featurestore.store import Store
from models import novelty
from models.base import TrainResult
from models.classify import (
    choose_head,
    classification_metrics,
    cv_steps,
    head_training_set,
    lexical_baselines,
    make_head,
    predict,
)
from models.lexical import raw_texts, view_source

__all__ = ["binary_metrics", "predict", "train"]

PR_POINTS = 101
SpamHead = Literal["auto", "logistic", "lexical", "hybrid"]
_HEADLINE = ("f1", "precision", "recall", "roc_auc", "average_precision", "accuracy")


def train(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    labels: Any = "label",
    label_col: str = "label",
    positive: str = "spam",
    head: SpamHead = "auto",
    C: float = 1.0,
    split: str = "text",
    n_splits: int = 5,
    seed: int = 0,
    texts: TextSource | None = None,
    as_of: Any = None,
    strict: bool = False,
    extra_encoders: Sequence[str] = (),
    rebuild: TrainingManifest | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit the spam head with cross-validated metrics of the ``positive`` class and the TF-IDF baselines.

    The lexical and hybrid heads and the baselines need the raw texts: a kept ``text`` column of
    the view, else ``texts`` (the source the view was materialized from; each text must hash to
    the stored content_hash), else the source its run record names. Without them ``auto`` is the
    dense head and the report says the baselines were skipped.
    """
    params = {"labels": "<DataFrame>" if hasattr(labels, "columns") else str(labels), "label_col": label_col, "positive": positive,
              "head": head, "C": C, "split": split, "n_splits": n_splits, "seed": seed,
              "extra_encoders": list(extra_encoders)}
    ts = head_training_set(
        rebuild, view, encoder, store=store, labels=labels, label_col=label_col, as_of=as_of, split=split,
        n_splits=n_splits, seed=seed, strict=strict, extra_encoders=extra_encoders,
    )
    if positive not in set(ts.y.tolist()):
        raise SourceError(f"positive class {positive!r} is not among the labels ({', '.join(map(str, np.unique(ts.y)))}); pass positive=")
    raw = raw_texts(ts, texts if texts is not None else view_source(ts, store=store))
    steps = cv_steps(progress, head, ts, raw)

    def scores(proba: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
        result = binary_metrics(ts.y, proba[:, list(classes).index(positive)], classes, positive)
        return {k: result[k] for k in _HEADLINE}

    def f1(proba: np.ndarray, classes: np.ndarray) -> float:
        return scores(proba, classes)["f1"]

    dense = make_head("logistic", class_weight="balanced", C=C, seed=seed)
    choice = choose_head(head, ts, raw, dense, f1, metric="f1", class_weight="balanced", seed=seed, steps=steps)
    report = binary_metrics(ts.y, choice.proba[:, list(choice.classes).index(positive)], choice.classes, positive)
    report.update(rows=len(ts), folds=len(ts.splits()), cv_seconds=round(choice.seconds, 3), warnings=ts.warnings, head_choice=choice.record)
    metrics = {k: report[k] for k in _HEADLINE}
    if raw is None:
        report["baseline"] = {"skipped": "no raw texts: keep a text column or pass texts="}
    else:
        report["baselines"] = lexical_baselines(ts, raw, scores, class_weight="balanced", seed=seed, steps=steps)
        report["baseline"] = report["baselines"]["tfidf+logistic"]
        metrics.update(baseline_f1=report["baselines"]["tfidf+logistic"]["f1"], baseline_char_f1=report["baselines"]["char-tfidf+logistic"]["f1"])
    from sklearn.base import clone

    final = clone(choice.estimator).fit(choice.X, ts.y)
    steps.tick()
    return TrainResult("spam", final, metrics, report, ts.manifest, ts.encoders, params,
                       novelty=novelty.describe(ts.X, seed=seed), choice=choice.record)


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
