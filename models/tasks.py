"""The head tasks by name, and the three verbs the CLI and flows use on them: train, predict, reproduce.

Each task is a module following :mod:`models.base`. Options reach a task's ``train`` only when
its signature takes them, so a misplaced option (``queries`` for spam) is a user error that
names the options the task does take, not a silent no-op.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import tempfile
import typing
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from featurestore.errors import FeatureStoreError, InvalidArgumentError
from featurestore.progress import ProgressFn
from featurestore.store import Store
from models.base import LoadedModel, TrainResult

__all__ = ["TASKS", "Reproduction", "check_options", "check_train", "predict", "reproduce", "task_module", "train"]

TASKS: dict[str, str] = {
    "spam": "models.spam",
    "image": "models.image",
    "classify": "models.classify",
    "ner": "models.ner",
    "ranking": "models.ranking",
}
_POSITIONAL = ("store", "view", "encoder")  # the arguments every train function takes by name, not options
_NOT_OPTIONS = ("rebuild", "progress")  # what a train function takes from this module, never from a user (models.base)
# Fine-tuned models (--unfreeze-last K) are registered as task "finetune": their own module predicts them.
_FINETUNED = "finetune"
_FINETUNE_PRESETS: dict[str, dict[str, Any]] = {
    "image": {},
    "classify": {},
    "spam": {"split": "text", "positive": "spam", "class_weight": "balanced"},
}


def task_module(task: str) -> ModuleType:
    """The module of ``task``; an unknown name lists the known ones."""
    if task == _FINETUNED:
        return importlib.import_module("models.finetune")
    if task not in TASKS:
        raise InvalidArgumentError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[task])


def check_options(task: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` less the unset ones; an option the task's ``train`` does not take is refused."""
    module = task_module(task)
    given = {k: v for k, v in options.items() if v is not None}
    if "unfreeze_last" in given:
        if task not in _FINETUNE_PRESETS:
            raise InvalidArgumentError(f"`unfreeze_last` applies to tasks {', '.join(_FINETUNE_PRESETS)}; not to {task!r}")
        module, given = task_module(_FINETUNED), {**_FINETUNE_PRESETS[task], **given}
    taken = _train_options(module)
    internal = sorted(set(given) & set(_NOT_OPTIONS))
    if internal:
        raise InvalidArgumentError(f"task {task!r} does not take {', '.join(_flag(k) for k in internal)} as an option")
    if _takes_any(module):  # the head's own parameters pass through **options; the head checks them
        return given
    foreign = sorted(set(given) - set(taken))
    if foreign:
        raise FeatureStoreError(
            f"task {task!r} does not take {', '.join(_flag(k) for k in foreign)}; it takes: {', '.join(_flag(k) for k in taken)}"
        )
    return given


def check_train(task: str, view: str, encoder: str | None, name: str, options: dict[str, Any], *, store: Store | str | None = None) -> dict[str, Any]:
    """:func:`check_options`, then what training would refuse for the arguments alone; the options to train with.

    Reads the tables' metadata and schemas, never their rows: the view and encoders exist, the
    labels file or column, split and folds make sense (:func:`featurestore.training.check_arguments`),
    the views and files the task's options name exist, a choice-valued option holds a known
    choice, the model name is valid and the store writable. The command line runs it before it
    starts the training flow, so a mistake is one quick line, not a Prefect start.
    """
    from featurestore.store.schema import check_view_name
    from featurestore.training import check_arguments

    given = check_options(task, options)
    store = Store.of(store)
    train_fn = _train_function(task_module(_FINETUNED if "unfreeze_last" in given else task))
    params = inspect.signature(train_fn).parameters
    taken = {k: given.get(k, params[k].default) for k in ("labels", "split", "n_splits", "as_of", "extra_encoders") if k in params}
    check_arguments(view, encoder, store=store, **{**taken, "extra_encoders": taken.get("extra_encoders") or ()})
    _check_choices(train_fn, given)
    if given.get("eval_view") is not None:  # scored with the same encoder as the view it trains on
        store.resolve_table(given["eval_view"], store.resolve_table(view, encoder).meta.encoder_id)
    if given.get("word2vec_view") is not None:
        store.resolve_table(given["word2vec_view"])
    for key in ("queries", "qrels", "docs"):
        if given.get(key) is not None and not Path(given[key]).is_file():
            raise FeatureStoreError(f"{_flag(key)} file not found: {given[key]}")
    task_check = getattr(task_module(task), "check_train_options", None)  # a task's own checks of its files
    if task_check is not None:
        task_check(given)
    check_view_name(name)
    store.ensure_writable()
    return given


def _check_choices(train_fn: Any, given: dict[str, Any]) -> None:
    """An option typed as a ``Literal`` (such as ``head``) takes one of its values only."""
    try:
        hints = typing.get_type_hints(train_fn)
    except (NameError, TypeError):  # an annotation that names a type only imported for type checkers
        return
    for key, value in given.items():
        choices = typing.get_args(hints.get(key)) if typing.get_origin(hints.get(key)) is typing.Literal else ()
        if choices and value not in choices:
            raise InvalidArgumentError(f"{_flag(key)} must be one of: {', '.join(map(str, choices))}. Got {value!r} instead.")


def train(
    task: str, view: str, encoder: str | None = None, *, store: Store | str | None = None, progress: ProgressFn | None = None, **options: Any
) -> TrainResult:
    """Fit and evaluate the head of ``task`` on ``view`` (not saved: see models.registry.save_model).

    ``progress(done, total)`` is called after each cross-validation fold or fitting step.
    """
    store = Store.of(store)
    given = check_options(task, options)
    module = task_module(_FINETUNED if "unfreeze_last" in given else task)
    return _train_function(module)(view, encoder, store=store, progress=progress, **given)


def predict(model: LoadedModel, inputs: Sequence[dict[str, Any]], *, top_k: int | None = None) -> list[dict[str, Any]]:
    """Per input: its id, label and score (entities for ner, documents for ranking: the top
    ``top_k``, default 10); ``top_k`` is refused for a task that does not rank."""
    module = task_module(model.task)
    if top_k is None:
        return module.predict(model, inputs)
    if "top_k" not in inspect.signature(module.predict).parameters:
        raise InvalidArgumentError(f"`top_k` applies to ranking models; model {model.name!r} is a {model.task} model")
    return module.predict(model, inputs, top_k=top_k)


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """A registered head trained again from its manifest: the metrics it was registered with and
    the new ones, whether they (to 9 decimals) and the head's files are identical, and the seconds it took."""

    name: str
    version: int
    task: str
    recorded_metrics: dict[str, Any]
    metrics: dict[str, Any]
    identical_metrics: bool
    identical_head: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``featurestore evaluate MODEL --json``."""
        return dataclasses.asdict(self)


def reproduce(model: LoadedModel, *, store: Store | str | None = None, progress: ProgressFn | None = None) -> Reproduction:
    """Train ``model`` again on the set its training manifest describes, and compare.

    The set is rebuilt through the manifest (its tables at the versions it records, its hashes
    checked: :func:`featurestore.training.training_set_from_manifest` for the heads on
    :func:`~featurestore.training.training_set`, the head's own reader for NER sentences and
    ranking judgments), whatever was written since; the head gets the options it was trained with.
    Returns the recorded and the new metrics, whether they and the head's bytes are identical,
    and the seconds it took: the evidence that a registered model is reproducible, and the
    check to run after an upgrade of the libraries it depends on.
    """
    import time

    from models.headfiles import head_files

    store = Store.of(store)
    manifest, training = model.manifest, model.training
    if training.arguments.get("labels") == "<DataFrame>":
        raise FeatureStoreError(f"model {model.name} was trained on labels given as a DataFrame; reproduce it from Python")
    module = task_module(model.task)
    recorded = {**training.arguments, **(manifest.get("params") or {})}
    options = {k: recorded[k] for k in _train_options(module) if k in recorded and k != "as_of"}
    started = time.perf_counter()
    result = _train_function(module)(training.view, training.tables[0].encoder_id, store=store, rebuild=training, progress=progress, **options)
    seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="fs-reproduce-") as tmp:
        files = head_files(Path(tmp), result.head)
    recorded_files = {k: v for k, v in manifest["files"].items() if k in files}
    return Reproduction(
        name=model.name,
        version=model.version,
        task=model.task,
        recorded_metrics=manifest["metrics"],
        metrics=result.metrics,
        identical_metrics=_rounded(result.metrics) == _rounded(manifest["metrics"]),
        identical_head=files == recorded_files,
        seconds=round(seconds, 3),
    )


def _train_function(module: ModuleType) -> Any:
    return module.finetune if module.__name__ == "models.finetune" else module.train


def _train_options(module: ModuleType) -> list[str]:
    parameters = inspect.signature(_train_function(module)).parameters.values()
    return [p.name for p in parameters
            if p.name not in _POSITIONAL + _NOT_OPTIONS and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def _takes_any(module: ModuleType) -> bool:
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(_train_function(module)).parameters.values())


def _rounded(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 9) if isinstance(v, float) else v for k, v in metrics.items()}


def _flag(option: str) -> str:
    return f"`{option}`"
