"""What every head task returns and takes: the contract between models/, the registry and the CLI.

A task module (``models.spam``, ``models.image``, ``models.classify``, ``models.ner``,
``models.ranking``) exposes two functions:

- ``train(view, encoder=None, *, store=None, **options) -> TrainResult``: build the training set from
  the store, fit the head, evaluate it (cross-validation or a held-out split) and return it,
  unsaved. The registry saves it (:func:`models.registry.save_model`). Two keywords are not
  options a user sets: ``rebuild`` (a :class:`~featurestore.manifest.TrainingManifest`: train on
  the set it describes, at its table versions, instead of building one from the options) and
  ``progress`` (called ``(done, total)`` after each cross-validation fold or fitting step).
- ``predict(model: LoadedModel, inputs: Sequence[dict]) -> list[dict]``: each input is
  ``{"id": ..., "text": ...}`` (or ``"path"`` for images); each output carries ``id``,
  ``label`` and ``score`` (plus ``entities`` for ner, ``documents`` for ranking).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featurestore.manifest import TrainingManifest


@dataclass
class TrainResult:
    """A fitted head with its evaluation, before it is saved."""

    task: str
    head: Any  # scikit-learn estimator API (a torch head wrapped in it)
    metrics: dict[str, float]  # the headline numbers (e.g. f1, roc_auc, accuracy, ndcg@10)
    report: dict[str, Any]  # the whole evaluation: per class, curves, confusion matrix, baselines, timings
    training_manifest: TrainingManifest  # what it was trained on (featurestore.manifest.make_manifest)
    encoders: list[dict[str, Any]]  # per feature source (featurestore.manifest.encoder_entry): view, encoder_id, encoder_ref, encoder_options, dim
    params: dict[str, Any] = field(default_factory=dict)  # the options train() was called with
    novelty: Any = None  # models.novelty.Novelty: the training features predict compares inputs with (None: not kept)
    choice: dict[str, Any] | None = None  # a head chosen by cross-validation: each candidate's score, the choice and why


@dataclass
class LoadedModel:
    """A head read back from the registry (files verified against its manifest)."""

    name: str
    version: int
    path: Path
    head: Any
    manifest: dict[str, Any]
    store: str  # the root of the store it lives in (set by the registry's loader)
    novelty: Any = None  # models.novelty.Novelty of its training features (None: saved without one)

    @property
    def task(self) -> str:
        return str(self.manifest["task"])

    @property
    def training(self) -> TrainingManifest:
        """The training manifest, read strictly (:meth:`TrainingManifest.from_dict`; checked at load)."""
        from featurestore.manifest import TrainingManifest

        return TrainingManifest.from_dict(self.manifest.get("training_set"))
