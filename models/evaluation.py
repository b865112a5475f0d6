"""Scores of a registered head on new labelled data, beside its baselines trained on the head's own rows.

:func:`evaluate` reads labelled inputs (a CSV/TSV/JSONL/Parquet file with text and label columns,
the SMSSpamCollection layout ``label<TAB>text``, or for image heads a folder of class folders),
predicts them with the head as ``featurestore predict`` does (the model's own encoders), and
scores the predictions with the task's metrics: spam F1/precision/recall/ROC-AUC/average
precision of the positive class, classify and image accuracy and macro F1. Beside the head, the
baselines it was reported with, fitted on the head's training set (the manifest's rows at their
table versions, and their raw texts) and scored on the same new data: the word and character
TF-IDF models for text heads, the majority class for classify and image heads.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.errors import FeatureStoreError, InvalidArgumentError, SourceError
from featurestore.store import Store
from models.base import LoadedModel

__all__ = ["EVALUATED_TASKS", "Evaluation", "evaluate", "evaluate_ner", "evaluate_ranking", "labelled_inputs"]

EVALUATED_TASKS = ("spam", "classify", "image")
_SPAM_METRICS = ("f1", "precision", "recall", "roc_auc", "average_precision", "accuracy")
_CLASSIFY_METRICS = ("accuracy", "macro_f1")


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """A head scored on new labelled data: the model, what was scored (``input`` and its
    ``input_sha256``, the ``rows`` scored, the inputs ``skipped`` with why), the head's
    ``metrics``, its ``baselines`` (name -> the same metrics, or ``skipped`` with the reason) and
    when. An NER head's also counts its ``tokens``, a ranking head's the ``dropped_judgments``."""

    name: str
    version: int
    task: str
    input: str
    input_sha256: str
    rows: int
    skipped: list[dict[str, Any]]
    metrics: dict[str, Any]
    baselines: dict[str, Any]
    evaluated_at: str
    tokens: int | None = None
    dropped_judgments: Any = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``featurestore evaluate --json`` and of ``evaluations.json``."""
        out: dict[str, Any] = {"name": self.name, "version": self.version, "task": self.task, "input": self.input,
                               "input_sha256": self.input_sha256, "rows": self.rows}
        if self.tokens is not None:
            out["tokens"] = self.tokens
        out["skipped"] = self.skipped
        if self.dropped_judgments is not None:
            out["dropped_judgments"] = self.dropped_judgments
        return {**out, "metrics": self.metrics, "baselines": self.baselines, "evaluated_at": self.evaluated_at}


def evaluate(
    model: LoadedModel,
    path: str | Path,
    *,
    store: Store | str | None = None,
    format: str | None = None,
    id_col: str | None = None,
    text_col: str | None = None,
    label_col: str = "label",
    save: bool = True,
) -> Evaluation:
    """Score ``model`` on the labelled inputs at ``path`` and, with ``save``, keep the result in
    the model's folder (``evaluations.json``, shown by ``featurestore report``).

    ``skipped`` in the result lists the inputs that could not be encoded, with why. Refused, before anything is written: a
    task other than spam, classify and image, an empty file, a missing label, a label that is
    not one of the head's classes.
    """
    from models import tasks

    store = Store.of(store)
    if model.task not in EVALUATED_TASKS:
        raise InvalidArgumentError(
            f"labelled inputs score {', '.join(EVALUATED_TASKS)} heads; model {model.name} v{model.version} is a {model.task} head "
            "(an NER head is scored on a token `view`, a ranking head on `queries` and `qrels`; without them, evaluate trains it again from its manifest)"
        )
    path = Path(path)
    field = "path" if model.task == "image" else "text"
    rows = labelled_inputs(path, field=field, format=format, id_col=id_col, value_col=text_col or field, label_col=label_col)
    classes = [str(c) for c in model.head.classes_]
    unknown = sorted({r["label"] for r in rows} - set(classes))
    if unknown:
        shown = ", ".join(repr(u) for u in unknown[:5])
        raise SourceError(f"{path}: label(s) {shown} are not classes of model {model.name} v{model.version} (its classes: {', '.join(classes)})")
    predictions = tasks.predict(model, rows)
    good = [i for i, p in enumerate(predictions) if p.get("label") is not None]
    if not good:
        raise SourceError(f"{path}: none of its {len(rows)} inputs could be predicted (first: {predictions[0].get('error')})")
    truth = np.array([rows[i]["label"] for i in good], dtype=object)
    predicted = np.array([str(predictions[i]["label"]) for i in good], dtype=object)
    score = np.array([predictions[i]["score"] for i in good], dtype=float)
    positive = str((model.manifest.get("params") or {}).get("positive", "spam"))
    if model.task == "spam":  # the score is the predicted class's probability: of two classes, 1 - it is the other's
        metrics = _spam_scores(truth, np.where(predicted == positive, score, 1.0 - score), classes, positive)
    else:
        metrics = _classify_scores(truth, predicted, classes)
    values = [rows[i][field] for i in good]
    data = path.read_bytes() if path.is_file() else "\n".join(sorted(f"{r['label']}/{r['id']}" for r in rows)).encode()
    return _result(
        store, model, save, input=str(path), input_sha256=hashlib.sha256(data).hexdigest(), rows=len(good),
        skipped=[{"id": p["id"], "error": p.get("error")} for p in predictions if p.get("label") is None],
        metrics=metrics, baselines=_baselines(store, model, values, truth, classes, positive),
    )


def evaluate_ranking(
    model: LoadedModel, queries: str | Path, qrels: str | Path, *, store: Store | str | None = None, qrels_by: str = "id", save: bool = True
) -> Evaluation:
    """nDCG@10, MRR@10 and recall@100 of a ranking head on new judged queries, beside BM25 and
    dense retrieval alone on the same queries (:func:`models.ranking.evaluate_queries`); the
    same result shape as :func:`evaluate`, kept in ``evaluations.json`` with ``save``."""
    from models import ranking

    store = Store.of(store)
    if model.task != "ranking":
        raise InvalidArgumentError(f"`queries` and `qrels` score ranking heads; model {model.name} v{model.version} is a {model.task} head")
    scored = ranking.evaluate_queries(model, queries, qrels, qrels_by=qrels_by)  # type: ignore[arg-type]
    digest = hashlib.sha256(Path(queries).read_bytes() + b"\0" + Path(qrels).read_bytes() + qrels_by.encode())
    return _result(
        store, model, save, input=f"{queries} + {qrels}", input_sha256=digest.hexdigest(), rows=scored["rows"], skipped=[],
        dropped_judgments=scored["dropped_judgments"], metrics=scored["metrics"], baselines=scored["baselines"],
    )


def evaluate_ner(model: LoadedModel, view: str, *, store: Store | str | None = None, save: bool = True) -> Evaluation:
    """Entity F1 of an NER head on a token view of new labelled sentences (a CoNLL file
    materialized with the head's encoder and ``--granularity token``), beside the dictionary
    baseline fitted on the head's own training sentences (:func:`models.ner.evaluate_view`); the
    same result shape as :func:`evaluate`, kept in ``evaluations.json`` with ``save``."""
    from models import ner

    store = Store.of(store)
    if model.task != "ner":
        raise InvalidArgumentError(f"a token `view` scores NER heads; model {model.name} v{model.version} is a {model.task} head (score it on labelled inputs)")
    scored = ner.evaluate_view(model, view, store=store)
    return _result(
        store, model, save, input=scored["input"], input_sha256=scored["content_hash"], rows=scored["rows"], tokens=scored["tokens"],
        skipped=[], metrics=scored["metrics"], baselines=scored["baselines"],
    )


def _result(store: Store, model: LoadedModel, save: bool, **scored: Any) -> Evaluation:
    """One evaluation record (the model, what was scored and when), kept in ``evaluations.json`` with ``save``."""
    from models.registry import save_evaluation

    result = Evaluation(name=model.name, version=model.version, task=model.task, **scored,
                        evaluated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if save:
        save_evaluation(model, result.to_dict(), store=store)
    return result


def labelled_inputs(
    path: Path, *, field: str = "text", format: str | None = None, id_col: str | None = None, value_col: str = "text", label_col: str = "label"
) -> list[dict[str, str]]:
    """``{"id", field, "label"}`` per labelled input of ``path``, read by the sources' own readers
    (csv, tsv, jsonl, parquet, sms; a folder of class folders for images)."""
    if field == "path":
        return _image_inputs(path)
    from featurestore.sources.formats import detect_format, open_records

    if not path.is_file():
        raise SourceError(f"input file not found: {path}")
    fmt = detect_format(path, format)
    columns, records = open_records(path, fmt, header=True, batch_size=10_000)
    for role, column in (("label", label_col), ("text", value_col), ("id", id_col)):
        if column is not None and column not in columns:
            flag = {"label": "`label_col`", "text": "`text_col`", "id": "`id_col`"}[role]
            raise SourceError(f"{path} has no {role} column {column!r} (columns: {', '.join(columns) or 'none'}); pass {flag}")
    rows = []
    for line, record in records:
        label = record.get(label_col)
        if label is None or not str(label).strip():
            raise SourceError(f"{path}: line {line} has no label in column {label_col!r}; every input needs its label")
        text = record.get(value_col)
        ident = record.get(id_col) if id_col is not None else line
        rows.append({"id": str(ident), field: "" if text is None else str(text), "label": str(label).strip()})
    if not rows:
        raise SourceError(f"{path} holds no labelled inputs")
    return rows


def _image_inputs(path: Path) -> list[dict[str, str]]:
    """A folder of class folders: each image with its folder's name as its label."""
    from featurestore.sources.images import ImageSource

    if not path.is_dir():
        raise SourceError(f"{path} is not a folder; an image head is evaluated on a folder of class folders (the folder name is the label)")
    rows = []
    for batch in ImageSource(str(path), layout="folders").batches():
        rows.extend({"id": e, "path": c, "label": str(lbl)} for e, c, lbl in zip(batch.entity_id, batch.content, batch.keep["label"]))
    if not rows:
        raise SourceError(f"{path} holds no images in class folders")
    return rows


def _spam_scores(truth: np.ndarray, score: np.ndarray, classes: list[str], positive: str) -> dict[str, Any]:
    from models.spam import binary_metrics

    if len(set(truth.tolist())) < 2:
        raise SourceError(f"the new data holds one class only ({truth[0]!r}); F1 and ROC-AUC need both {' and '.join(classes)}")
    report = binary_metrics(truth, score, np.array(classes, dtype=object), positive)
    return {k: report[k] for k in _SPAM_METRICS} | {"confusion_matrix": report["confusion_matrix"], "classes": report["classes"]}


def _classify_scores(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from models.classify import classification_metrics

    report = classification_metrics(truth, predicted, np.array(classes, dtype=object))
    return {k: report[k] for k in _CLASSIFY_METRICS} | {"per_class": report["per_class"], "confusion_matrix": report["confusion_matrix"], "classes": report["classes"]}


def _baselines(store: Store, model: LoadedModel, values: list[str], truth: np.ndarray, classes: list[str], positive: str) -> dict[str, Any]:
    """The head's baselines fitted on its training set and scored on the new inputs."""
    from featurestore.training import training_set_from_manifest
    from models.lexical import BASELINES, baseline_model, raw_texts, view_source

    try:
        ts = training_set_from_manifest(model.training, store=store)
    except (FeatureStoreError, KeyError, TypeError) as exc:
        return {"skipped": f"the training set does not rebuild: {exc}"}
    y = ts.y.astype(str)
    out: dict[str, Any] = {}
    if model.task != "spam":
        values_, counts = np.unique(y, return_counts=True)
        majority = np.full(len(truth), values_[counts.argmax()], dtype=object)
        out["majority"] = _classify_scores(truth, majority, classes)
    if model.task == "image":
        return out
    texts = raw_texts(ts, view_source(ts, store=store))
    if texts is None:
        out["tfidf"] = {"skipped": "no raw texts of the training rows: the view keeps no text column and its source is gone"}
        return out
    params = model.manifest.get("params") or {}
    class_weight = "balanced" if model.task == "spam" else params.get("class_weight")
    docs = np.asarray(values, dtype=object)
    for name in BASELINES:
        fitted = baseline_model(name, class_weight=class_weight, binary=len(np.unique(y)) == 2, seed=int(params.get("seed", 0))).fit(np.asarray(texts, dtype=object), y)
        proba = fitted.predict_proba(docs)
        fitted_classes = [str(c) for c in fitted.classes_]
        if model.task == "spam":
            out[name] = _spam_scores(truth, proba[:, fitted_classes.index(positive)], classes, positive)
        else:
            out[name] = _classify_scores(truth, np.asarray(fitted_classes, dtype=object)[proba.argmax(axis=1)], classes)
    return out
