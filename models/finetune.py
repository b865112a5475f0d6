"""Transfer-learning mode (b): fine-tune the last K layers of the encoder together with a linear head.

For an EfficientNet-Lite0 view the last K MBConv blocks, the conv head and a linear classifier
train; for a MiniLM (sentence-transformers BERT) view, the last K transformer layers, mean
pooling and a linear classifier. The result is evaluated on the training set's own folds beside
the frozen head (logistic regression on the stored features), each with its training time, so the
report shows whether fine-tuning paid for itself on this data.

Why it is fast enough on a CPU: the frozen lower part runs once per input, not once per fold and
epoch. Its output is cached -- the feature map entering block 16-K at the training resolution;
the hidden states entering layer L-K, one unpadded array per text so that each batch rebuilds
its attention mask -- and only the top part trains over the cache. The price of that design: no
random augmentation, since the top always sees the same centre crop.

Training: AdamW; the pretrained layers learn at a tenth of ``lr`` (they should move less than the
fresh classifier); BatchNorm stays in eval mode (statistics of a batch of a few images are noise);
early stopping on the loss of a seeded, stratified, grouped validation slice of each training
fold, best weights kept. Weights, dropout and batch order are seeded: two runs on one machine
give identical metrics and tensors.

The tuned network is a new encoder: its id hashes the base encoder_id, K and the tuned weights,
so it never meets the view's frozen vectors. The saved head holds only the tuned top part;
:func:`predict` runs the base encoder's lower part (rebuilt from its ref, refused when its
encoder_id changed) and then the saved top.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone

from featurestore.errors import FineTuneError, SourceError
from featurestore.manifest import TrainingManifest, encoder_entry
from featurestore.progress import ProgressFn, Steps
from featurestore.sources import open_source
from featurestore.store import FeatureTable, Store
from featurestore.training import TrainingSet
from models.base import LoadedModel, TrainResult
from models.classify import classification_metrics, head_training_set, make_head, out_of_fold_proba
from models.finetuned import Activations, FineTunedClassifier, FineTunedImageClassifier, FineTunedTextClassifier
from models.lexical import raw_texts
from models.spam import binary_metrics
from models.torch_utils import require_torch

__all__ = ["FineTunedImageClassifier", "FineTunedTextClassifier", "finetune", "predict"]
HEADLINE = ("accuracy", "macro_f1", "f1", "precision", "recall", "roc_auc", "average_precision")


# --------------------------------------------------------------------------------- train


def finetune(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    unfreeze_last: int,
    labels: Any = "label",
    label_col: str = "label",
    split: str = "stratified",
    positive: str | None = None,
    class_weight: str | None = None,
    n_splits: int = 5,
    seed: int = 0,
    max_epochs: int = 10,
    patience: int = 2,
    lr: float = 1e-3,
    batch_size: int = 32,
    inputs: Any = None,
    as_of: Any = None,
    strict: bool = False,
    rebuild: TrainingManifest | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fine-tune the last ``unfreeze_last`` layers with a linear head; report it beside the frozen head.

    Both are cross-validated on the same folds (``training_set``'s ``split``, ``n_splits``,
    ``seed``); ``positive`` adds that class's F1/precision/recall/ROC-AUC (spam). Raw inputs come
    from the view's kept ``text`` column, else ``inputs`` (a source, or the file or folder the
    view was materialized from), else the source its newest run record names; each must hash to
    the stored content_hash. ``train_seconds``: the frozen side's cross-validation over stored
    features; the fine-tuned side's, with the one pass of the frozen lower part (``cache_seconds``).
    """
    store = Store.of(store)
    table = store.resolve_table(view, encoder)
    head = _head_for(table, unfreeze_last, max_epochs=max_epochs, patience=patience, lr=lr, batch_size=batch_size,
                     class_weight=class_weight, random_state=seed)
    ts = head_training_set(rebuild, view, table.meta.encoder_id, store=store, labels=labels, label_col=label_col, as_of=as_of,
                           split=split, n_splits=n_splits, seed=seed, strict=strict)
    classes = np.unique(ts.y)
    if positive is not None and positive not in set(classes.tolist()):
        raise SourceError(f"positive class {positive!r} is not among the labels ({', '.join(map(str, classes))}); pass positive=")
    raw = _raw_inputs(store, table, ts, inputs)
    steps = Steps(progress, 2 * len(ts.splits()) + 1)  # each fold of the frozen head, of the fine-tuned one, then the final fit

    started = time.perf_counter()
    frozen_proba, _ = out_of_fold_proba(make_head("logistic", class_weight=class_weight, seed=seed), ts, steps=steps)
    frozen = _metrics(ts.y, frozen_proba, classes, positive) | {"train_seconds": round(time.perf_counter() - started, 3)}

    started = time.perf_counter()
    X = _checked(head.activations(raw), ts)
    cache_seconds = time.perf_counter() - started
    proba, best_epochs = np.zeros((len(ts), len(classes))), []
    for train_index, test_index in ts.splits():
        fitted = clone(head).fit(_subset(X, train_index), ts.y[train_index], ts.groups[train_index])
        proba[np.ix_(test_index, np.searchsorted(classes, fitted.classes_))] = fitted.predict_proba(_subset(X, test_index))
        best_epochs.append(fitted.best_epoch_)
        steps.tick()
    tuned = _metrics(ts.y, proba, classes, positive) | {
        "train_seconds": round(time.perf_counter() - started, 3), "cache_seconds": round(cache_seconds, 3)}
    started = time.perf_counter()
    final = head.fit(X, ts.y, ts.groups)
    steps.tick()
    report = {
        "unfreeze_last": unfreeze_last, "frozen": frozen, "finetuned": tuned,
        "epochs": {"folds": best_epochs, "final": final.best_epoch_, "max_epochs": max_epochs, "patience": patience},
        "rows": len(ts), "folds": len(ts.splits()), "final_fit_seconds": round(time.perf_counter() - started, 3),
        "base_encoder_id": table.meta.encoder_id, "finetuned_encoder_id": final.finetuned_encoder_id(), "warnings": ts.warnings,
    }
    metrics = {k: tuned[k] for k in HEADLINE if k in tuned} | {f"frozen_{k}": frozen[k] for k in HEADLINE if k in frozen}
    params = {"unfreeze_last": unfreeze_last, "label_col": label_col, "split": split, "positive": positive,
              "class_weight": class_weight, "n_splits": n_splits, "seed": seed, "max_epochs": max_epochs,
              "patience": patience, "lr": lr, "batch_size": batch_size}
    # the tuned network is the model's encoder: its own id and no ref, so frozen-head code refuses it
    tuned_encoder = encoder_entry(table, encoder_id=report["finetuned_encoder_id"], encoder_ref=None, encoder_options={},
                                  base_encoder_id=table.meta.encoder_id, base_encoder_ref=final.encoder_ref, unfreeze_last=final.unfreeze_last)
    return TrainResult("finetune", final, metrics, report, ts.manifest, [tuned_encoder], params)


def predict(model: LoadedModel, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per input: ``id``, ``label``, ``score``; the base encoder's lower part, then the saved top part.

    An input that cannot be read (an undecodable image, an empty text) gets ``label`` None and
    its ``error``; the rest proceed.
    """
    head = model.head
    key = "path" if head.modality == "image" else "text"
    for i, item in enumerate(inputs):
        if key not in item:
            raise SourceError(f"input {i} ({item.get('id', i)!r}) has no {key!r}; model {model.name} takes {key}s")
    X, errors = head.activations(["" if item[key] is None else os.fspath(item[key]) for item in inputs])
    out = [{"id": item.get("id", i), "label": None, "score": None, "error": err} for i, (item, err) in enumerate(zip(inputs, errors))]
    good = np.array([i for i, err in enumerate(errors) if err is None], dtype=np.int64)
    if len(good):
        proba = head.predict_proba(_subset(X, good))
        for row, i in enumerate(good):
            best = int(proba[row].argmax())
            label = head.classes_[best]
            out[i].update(label=label.item() if isinstance(label, np.generic) else label, score=float(proba[row, best]))
            del out[i]["error"]
    return out


# ------------------------------------------------------------------------------ helpers


def _head_for(table: FeatureTable, unfreeze_last: int, **params: Any) -> FineTunedClassifier:
    """The head class for the view's encoder; refuses encoders with no layers to tune, and K out of range."""
    meta = table.meta
    family = meta.encoder_spec.get("family")
    kinds = {("efficientnet-lite", "image"): FineTunedImageClassifier, ("sentence-transformers", "sentence"): FineTunedTextClassifier}
    cls = kinds.get((family, meta.granularity))
    if cls is None:
        raise FineTuneError(
            f"view {meta.view!r} is encoded with {meta.encoder_name} ({meta.encoder_id}), which has no layers to fine-tune; "
            "fine-tuning takes an efficientnet-lite0 view or a minilm (sentence-transformers) sentence view"
        )
    if "tta" in meta.encoder_spec:  # the fine-tuned network reads one centre crop per image
        raise FineTuneError(
            f"view {meta.view!r} is encoded with test-time augmentation (tta {meta.encoder_spec['tta']['views']}); "
            "fine-tuning reads the centre crop: fine-tune a view materialized without `tta`"
        )
    ref = meta.encoder_ref or meta.encoder_name  # tables written before refs were kept: the name; its id is checked
    head = cls(ref, meta.encoder_id, unfreeze_last, encoder_options=meta.encoder_options or {}, **params)
    head.check_params()
    return head


def _raw_inputs(store: Store, table: FeatureTable, ts: TrainingSet, inputs: Any) -> list[str]:
    """Each row's text or image path: a kept text column, else ``inputs``, else the run record's source."""
    kept = raw_texts(ts, None) if table.meta.modality == "text" else None
    if kept is not None:
        return kept
    if inputs is None:
        runs = [r for r in store.runs(limit=sys.maxsize) if (r.get("view"), r.get("encoder_id")) == (table.meta.view, table.meta.encoder_id)]
        if not runs or not runs[-1].get("source"):
            raise SourceError(f"view {table.meta.view!r} keeps no raw inputs and no run record names its source; pass inputs=PATH")
        inputs = runs[-1]["source"]
    return raw_texts(ts, inputs if hasattr(inputs, "batches") else open_source(inputs))


def _checked(result: tuple[Activations, list[str | None]], ts: TrainingSet) -> Activations:
    """The activations, unless a stored row's input can no longer be read (it was encoded before)."""
    X, errors = result
    bad = next((i for i, err in enumerate(errors) if err is not None), None)
    if bad is not None:
        raise SourceError(f"entity {ts.ids[bad]!r} of the training set cannot be read now ({errors[bad]}); re-materialize the view")
    return X


def _metrics(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, positive: str | None) -> dict[str, Any]:
    if positive is None:
        return classification_metrics(y, classes[proba.argmax(axis=1)], classes)
    report = binary_metrics(y, proba[:, list(classes).index(positive)], classes, positive)
    del report["pr_curve"]
    return report


def _subset(X: Activations, rows: np.ndarray) -> Activations:
    return [X[i] for i in rows] if isinstance(X, list) else X[require_torch().from_numpy(np.asarray(rows, dtype=np.int64))]
