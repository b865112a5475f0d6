"""Image classification: a linear head (or an MLP) on frozen CNN features.

The generic classifier with the image task's defaults: 5-fold stratified cross-validation
(grouped by entity, i.e. by file), accuracy, per-class recall and the confusion matrix. The
default head is ``logistic-cv``: L2-normalised features and logistic regression whose ``C`` an
inner cross-validation picks within each training fold (on hymenoptera_train: 9 errors in 245
where the standardised ``logistic`` head at C=1 made 12; see the README's results).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from featurestore.errors import InvalidArgumentError
from featurestore.manifest import TrainingManifest
from featurestore.progress import ProgressFn
from featurestore.store import Store
from models.base import TrainResult
from models.classify import HeadKind, predict
from models.classify import train as train_classifier

__all__ = ["check_train_options", "predict", "train"]


def check_train_options(given: dict[str, Any]) -> None:
    """What ``train`` refuses of the options alone, checked before any flow starts (models.tasks.check_train)."""
    _check_c(given.get("head", "logistic-cv"), given.get("C"))


def _check_c(head: str, C: float | None) -> None:
    if head == "logistic-cv" and C is not None:
        raise InvalidArgumentError(f"head 'logistic-cv' chooses C by inner cross-validation; to fix C={C}, use head 'logistic'")


def train(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    labels: Any = "label",
    label_col: str = "label",
    head: HeadKind = "logistic-cv",
    C: float | None = None,
    hidden: Sequence[int] = (256,),
    n_splits: int = 5,
    seed: int = 0,
    as_of: Any = None,
    strict: bool = False,
    rebuild: TrainingManifest | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit the image head on ``view``'s CNN features; metrics: accuracy, macro F1, per-class recall.

    ``head``: ``logistic-cv`` (default; ``C`` chosen by inner CV, the chosen value in the
    report as ``chosen_C``), ``logistic`` (standardised features, ``C`` default 1.0) or ``mlp``.
    """
    _check_c(head, C)
    result = train_classifier(
        view, encoder, store=store, labels=labels, label_col=label_col, head=head, C=1.0 if C is None else C, hidden=hidden,
        split="stratified", n_splits=n_splits, seed=seed, as_of=as_of, strict=strict, task="image",
        rebuild=rebuild, progress=progress,
    )
    result.metrics.update({f"recall_{name}": cls["recall"] for name, cls in result.report["per_class"].items()})
    if head == "logistic-cv":
        result.report["chosen_C"] = float(result.head[-1].C_)
        result.params["C"] = None  # chosen, not given: what training again from the manifest passes
    return result
