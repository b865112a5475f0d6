"""The model registry: trained heads under ``<store root>/models/<name>/<version>/``.

Each version folder holds::

    head.skops                     a scikit-learn head (skops: no pickle), or
    head.safetensors + head.json   a torch head's tensors and its config
    manifest.json                  task, name, version, training-set manifest, encoders, params,
                                   metrics, created_at, head format and class, sha256 of every file
    report.json                    the whole evaluation
    novelty.safetensors            the training features predict measures inputs against (models.novelty;
                                   spam, image and classify heads), their distances in manifest.json
    evaluations.json               scores on new labelled data (``featurestore evaluate --input``),
                                   added after the save: outside the manifest, plain JSON, read
                                   by the report only

Loading never runs code a model folder brings. A sha256 in the manifest only catches accidents
(whoever can rewrite a head can rewrite its manifest too), so a version folder is treated as
untrusted data:

- it holds plain files of the names listed below, no links, and the manifest names no others;
- ``head.skops`` is read only when every object in it is of a type in ``SKOPS_TYPES`` and built by
  a skops node kind in ``SKOPS_NODES``: exact names, the ones this project's heads save (a test
  trains every head kind and checks), never a prefix such as ``numpy.`` (which admits
  ``numpy.testing._private.utils.runstring``) and not skops's own default trust (every
  scikit-learn estimator, numpy and scipy ufuncs);
- a torch head is rebuilt from tensors (safetensors, no pickle) by a class on an allow-list;
- a file that cannot be read as what it should be is a :class:`ModelError` naming the file.

Torch heads agree to this contract: the head object (the scikit-learn style wrapper that
TrainResult carries) is listed in ``TORCH_HEAD_CLASSES`` (or registered with :func:`torch_head`,
e.g. by a plugin or a test) and exposes

- ``state_tensors() -> dict[str, torch.Tensor]``: everything learned;
- ``config() -> dict``: JSON-able constructor arguments and label names;
- classmethod ``from_state(tensors, config)``: the fitted head again.

Versions are integers 1, 2, ...; a version is written to a hidden temporary folder and renamed
into place, so a crash leaves no half-written version, and the next save of the name removes the
killed writer's temporary folder. Heads are saved byte-for-byte deterministically (skops zip
members get canonical names and a fixed timestamp), so training twice from the same manifest
gives identical files.
"""

from __future__ import annotations

import fcntl
import importlib
import io
import json
import os
import re
import shutil
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from featurestore.encoders import BaseEncoder, from_meta
from featurestore.errors import FeatureStoreError, ModelError, StoreError, UnknownModelError
from featurestore.sources.content import file_sha256
from featurestore.store import Store
from featurestore.store.schema import check_view_name
from featurestore.manifest import TrainingManifest
from models import novelty
from models.base import LoadedModel, TrainResult

__all__ = [
    "head_files",
    "list_models",
    "load_model",
    "model_encoders",
    "needs_retrain",
    "newest_records",
    "save_evaluation",
    "save_model",
    "skops_refusals",
    "torch_head",
]

SKOPS_FILE = "head.skops"
TORCH_FILE = "head.safetensors"
TORCH_CONFIG = "head.json"
EVALUATIONS_FILE = "evaluations.json"
LISTED = ("manifest.json", "report.json")  # what listing a remote store's models fetches (not the heads)
MODEL_FILES = frozenset({SKOPS_FILE, TORCH_FILE, TORCH_CONFIG, "report.json", novelty.FILE})  # what a version's manifest may list
# Every type a saved scikit-learn head holds, by full name: what the heads this project trains save
# (classify/spam/image logistic and mlp pipelines, the lexical and hybrid text pipelines, the ranking
# pipeline, TokenLogisticRegression).
# tests/security/test_skops_trust.py trains each kind and checks its archive against these sets, so a
# head that needs another type fails a test instead of widening trust. None of them runs code when
# built: skops makes them with ``cls.__new__`` and sets their attributes.
SKOPS_TYPES = frozenset({
    "builtins.dict",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.float64",
    "numpy.ndarray",
    "numpy.random.mtrand.RandomState",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.feature_extraction.text.TfidfVectorizer",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.linear_model._logistic.LogisticRegressionCV",
    "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.Normalizer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._label.LabelBinarizer",
    "models.tagging.TokenLogisticRegression",
})
# The skops node kinds those heads are written with (SliceNode: a ColumnTransformer's column slices,
# built from three JSON integers). Not among them: FunctionNode, MethodNode,
# PartialNode, OperatorFuncNode and ConstructorFromReduceNode (they hand out or call callables).
SKOPS_NODES = frozenset({"DictNode", "JsonNode", "ListNode", "NdArrayNode", "ObjectNode", "RandomStateNode", "SliceNode", "TupleNode", "TypeNode"})
TORCH_HEAD_CLASSES = (
    "models.tagging.TorchTokenClassifier",
    "models.finetuned.FineTunedImageClassifier",
    "models.finetuned.FineTunedTextClassifier",
)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKOPS_IDS = re.compile(r'("__id__": )(\d+)|"(\d+)\.npy"')
_TORCH_HEADS: dict[str, type] = {}

H = TypeVar("H", bound=type)


def torch_head(cls: H) -> H:
    """Class decorator: allow ``cls`` (a torch head following the contract above) to be loaded."""
    _TORCH_HEADS[_class_path(cls)] = cls
    return cls


# --------------------------------------------------------------------------------- save


def save_model(store: Store | str | None, name: str, result: TrainResult) -> LoadedModel:
    """Write ``result`` as the next version of model ``name`` and return it as loaded."""
    store = store if isinstance(store, Store) else Store(store)
    check_view_name(name)
    store.ensure_writable()
    folder = store.fetch(f"models/{name}", marker="manifest.json", names=LISTED)  # a remote store's versions count too
    folder.mkdir(parents=True, exist_ok=True)
    with _writing(folder):
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            head_info = _write_head(tmp, result.head)
            (tmp / "report.json").write_text(_json(result.report))
            if result.novelty is not None:
                novelty.save(tmp, result.novelty)
            while True:  # another writer may take a version number first: take the next one
                version = _next_version(folder)
                manifest = _manifest(result, name, version, head_info, tmp)
                (tmp / "manifest.json").write_text(_json(manifest))
                try:
                    os.rename(tmp, folder / str(version))
                    break
                except OSError:
                    if not (folder / str(version)).exists():
                        raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    store.publish(f"models/{name}/{version}")
    return LoadedModel(name=name, version=version, path=folder / str(version), head=result.head, manifest=manifest, store=store.root,
                       novelty=result.novelty)


def save_evaluation(store: Store | str | None, model: LoadedModel, evaluation: dict[str, Any]) -> Path:
    """Add ``evaluation`` (one :func:`models.evaluation.evaluate` result) to the version's
    ``evaluations.json``, replacing an earlier one of the same input (``input_sha256``).

    The file is written beside the version folder under the model's writer lock and renamed
    into place, so a reader sees the old list or the new one; a list that cannot be read is
    replaced. Returns the file's path.
    """
    store = store if isinstance(store, Store) else Store(store)
    store.ensure_writable()
    folder = store.path / "models" / model.name
    target = folder / str(model.version) / EVALUATIONS_FILE
    try:
        earlier = json.loads(target.read_text()) if target.is_file() else []
    except (OSError, ValueError, RecursionError):
        earlier = []
    kept = [e for e in earlier if isinstance(e, dict) and e.get("input_sha256") != evaluation.get("input_sha256")] if isinstance(earlier, list) else []
    with _writing(folder):
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        try:
            tmp.write_text(_json([*kept, evaluation]))
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    store.publish(f"models/{model.name}/{model.version}/{EVALUATIONS_FILE}")
    return target


@contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """Hold a shared ``flock`` on a model's folder while writing a version; first remove dead writers' ``.tmp-*``.

    Models have no view lock, and two trainings of one name may save at once (each takes the
    next version). Every writer holds the folder's lock *shared* while its ``.tmp-*`` exists, so
    whoever gets it *exclusively* knows that no writer is at work: every ``.tmp-*`` there is a
    killed writer's (the kernel drops a dead process's ``flock``), and is removed. When another
    writer is at work the sweep waits for the next save. No pid or age guess is involved.
    """
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # a live writer holds it: its .tmp-* is live
        else:
            for dead in folder.glob(".tmp-*"):
                shutil.rmtree(dead, ignore_errors=True)
        fcntl.flock(fd, fcntl.LOCK_SH)  # (a conversion may let go in between: this writer has no .tmp-* yet)
        yield
    finally:
        os.close(fd)


def _write_head(folder: Path, head: Any) -> dict[str, str]:
    path = _class_path(type(head))
    if path in _TORCH_HEADS or path in TORCH_HEAD_CLASSES:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_tensors().items()}
        save_file(tensors, str(folder / TORCH_FILE))
        (folder / TORCH_CONFIG).write_text(_json(head.config()))
        return {"format": "safetensors", "class": path}
    import skops.io as sio

    data = canonical_skops(sio.dumps(head))
    refused = skops_refusals(data)
    if refused:  # a head the registry would refuse to load is never saved
        raise ModelError(
            f"a {path} head holds types the registry does not load ({', '.join(map(repr, refused[:3]))}); it is not saved. "
            "Add them to models.registry.SKOPS_TYPES only once it is clear that building them runs no code"
        )
    (folder / SKOPS_FILE).write_bytes(data)
    return {"format": "skops", "class": path}


def head_files(folder: Path, head: Any) -> dict[str, str]:
    """Write ``head``'s files into ``folder`` as :func:`save_model` does; their sha256 by file name."""
    _write_head(folder, head)
    return {p.name: file_sha256(p) for p in sorted(folder.iterdir())}


def canonical_skops(data: bytes) -> bytes:
    """The same skops archive with deterministic bytes.

    skops names array members and memo ids after ``id()`` of the objects, and stamps members
    with the current time: both change from run to run. Ids are renumbered in order of first
    appearance (a bijection, so shared references stay shared) and every member gets a fixed
    timestamp.
    """
    source = zipfile.ZipFile(io.BytesIO(data))
    numbers: dict[str, str] = {}

    def renumber(match: re.Match[str]) -> str:
        new = numbers.setdefault(match.group(2) or match.group(3), str(len(numbers) + 1))
        return f"{match.group(1)}{new}" if match.group(2) else f'"{new}.npy"'

    schema = _SKOPS_IDS.sub(renumber, source.read("schema.json").decode("utf-8"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        members = []
        for info in source.infolist():
            if info.filename == "schema.json":
                members.append(("schema.json", schema.encode("utf-8"), info.compress_type))
            else:
                members.append((f"{numbers[info.filename.removesuffix('.npy')]}.npy", source.read(info), info.compress_type))
        for member, payload, compression in sorted(members):
            target.writestr(zipfile.ZipInfo(member, date_time=_FIXED_TIME), payload, compress_type=compression)
    return out.getvalue()


def _manifest(result: TrainResult, name: str, version: int, head: dict[str, str], folder: Path) -> dict[str, Any]:
    return {
        "task": result.task,
        "name": name,
        "version": version,
        "head": head,
        "encoders": result.encoders,
        "training_set": result.training_manifest.to_dict(),
        "params": result.params,
        "metrics": result.metrics,
        **({"head_choice": result.choice} if result.choice is not None else {}),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **({"novelty": result.novelty.record()} if result.novelty is not None else {}),
        "files": {p.name: file_sha256(p) for p in sorted(folder.iterdir()) if p.name != "manifest.json"},
    }


def _next_version(folder: Path) -> int:
    """After every numbered folder, complete or not (a fetch from a remote store may be half done)."""
    taken = [int(p.name) for p in folder.iterdir() if p.name.isdigit()] if folder.is_dir() else []
    return max(taken, default=0) + 1


def model_versions(folder: Path) -> list[int]:
    """The saved versions under a model's folder, oldest first (none when the folder is missing); a
    version is saved once its manifest.json is there (written last, locally and in a bucket)."""
    if not folder.is_dir():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "manifest.json").is_file())


def newest_manifest(store: Store | str | None, name: str) -> tuple[int, dict[str, Any]] | None:
    """The newest version of model ``name`` and its manifest.json, without loading the head (None: never saved)."""
    store = store if isinstance(store, Store) else Store(store)
    versions = model_versions(store.fetch(f"models/{check_view_name(name)}", marker="manifest.json", names=LISTED))
    if not versions:
        return None
    model = f"model {name} v{versions[-1]}"
    manifest = _read_manifest(model, store.path / "models" / name / str(versions[-1]))
    _check_training(model, manifest)
    return versions[-1], manifest


def needs_retrain(
    name: str, *, store: Store | str | None, task: str, view: str, encoder_id: str, options: dict[str, Any]
) -> str | None:
    """Why model ``name`` needs training for ``task`` on ``view``'s table ``encoder_id`` with
    ``options``; None when its newest version is current.

    The reasons: never trained; trained for another task, on another view or encoder, or with
    other options; a table its training manifest names has moved to a newer version since, or
    is gone. Reads only the newest version's manifest.json (no head is loaded), so the check
    costs next to nothing when nothing changed; a manifest that cannot be read is a reason too.
    """
    store = store if isinstance(store, Store) else Store(store)
    try:
        saved = newest_manifest(store, name)
    except ModelError as exc:
        return f"{exc}"
    if saved is None:
        return "not trained yet"
    newest, manifest = f"v{saved[0]}", saved[1]
    if manifest.get("task") not in (task, "finetune"):  # a fine-tuned model is registered under task "finetune"
        return f"{newest} is a {manifest.get('task')} model; the project file says {task}"
    params = manifest.get("params") if isinstance(manifest.get("params"), dict) else {}
    for key, value in options.items():
        if json.dumps(params.get(key), sort_keys=True, default=str) != json.dumps(value, sort_keys=True, default=str):
            return f"option {key} is {value!r} in the project file; {newest} was trained with {params.get(key)!r}"
    training = TrainingManifest.from_dict(manifest["training_set"])  # checked when the manifest was read
    if training.view != view:
        return f"{newest} was trained on view {training.view}; the project file says {view}"
    trained = training.versions()
    if encoder_id not in trained:
        return f"{newest} was trained on {', '.join(trained)}; the view's table is now {encoder_id}"
    for table in training.tables:
        try:
            now = store.resolve_table(table.view, table.encoder_id).version()
        except StoreError:
            return f"{table.view}/{table.encoder_id}, which {newest} was trained on, is gone"
        if now != table.version:
            return f"{table.view}/{table.encoder_id} is at version {now}; {newest} was trained on version {table.version}"
    return None


# --------------------------------------------------------------------------------- load


def load_model(store: Store | str | None, name: str, version: int | None = None) -> LoadedModel:
    """Model ``name`` at ``version`` (the newest when None), its files verified against the manifest."""
    store = store if isinstance(store, Store) else Store(store)
    folder = store.fetch(f"models/{check_view_name(name)}", marker="manifest.json", names=LISTED)
    versions = model_versions(folder)
    if not versions:
        from featurestore.store.catalog import did_you_mean

        names = sorted({m["name"] for m in list_models(store)})
        raise UnknownModelError(f"no model {name!r} in {store.root}; models: {', '.join(names) or 'none yet'}{did_you_mean(name, names)}")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise UnknownModelError(f"model {name!r} has no version {version}; versions: {', '.join(map(str, versions))}")
    path = store.fetch(f"models/{name}/{version}", marker="manifest.json")  # the head files too
    model = f"model {name} v{version}"
    manifest = _read_manifest(model, path)
    _check_training(model, manifest)
    _verify(model, path, manifest["files"])
    head = _read_head(model, path, manifest["head"])
    return LoadedModel(name=name, version=version, path=path, head=head, manifest=manifest, store=store.root,
                       novelty=novelty.load(model, path, manifest))


def _read_manifest(model: str, path: Path) -> dict[str, Any]:
    """The manifest of the version folder ``path``, once the folder holds only plain files."""
    _refuse_links(model, path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{model}: manifest.json cannot be read ({_first_line(exc)}); retrain it") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("head"), dict):
        raise ModelError(f"{model}: manifest.json is not a model manifest (it needs objects 'files' and 'head'); retrain it")
    return manifest


def _check_training(model: str, manifest: dict[str, Any]) -> None:
    """Refuse a manifest whose training set cannot be read strictly (loading and retraining
    policy rely on it; a listing shows what it can of a damaged manifest instead)."""
    try:
        TrainingManifest.from_dict(manifest.get("training_set"))
    except StoreError as exc:
        raise ModelError(f"{model}: manifest.json's training_set cannot be read ({exc}); retrain it") from None


def _refuse_links(model: str, path: Path) -> None:
    """A version folder holds plain files: a link could make a load read a file outside the store."""
    for entry in [path, *path.iterdir()]:
        if entry.is_symlink() or not (entry.is_dir() if entry == path else entry.is_file()):
            raise ModelError(f"{model}: {entry.name} is a link or not a plain file; a model folder holds plain files only, retrain it")


def _verify(model: str, path: Path, files: dict[str, Any]) -> None:
    """Refuse a version whose files differ from the sha256 its manifest recorded, or whose manifest
    names a file that is not a model file (``../x`` would be read outside the folder)."""
    foreign = sorted(str(f) for f in files if f not in MODEL_FILES)
    if foreign:
        raise ModelError(f"{model}: manifest.json lists {foreign[0]!r}, which is not a model file ({', '.join(sorted(MODEL_FILES))}); retrain it")
    present = {p.name for p in path.iterdir()} - {"manifest.json", EVALUATIONS_FILE}
    added = sorted(present - set(files))
    if added:
        raise ModelError(f"{model}: {added[0]} was added after it was saved; remove it or retrain")
    for file, digest in files.items():
        if not (path / file).is_file():
            raise ModelError(f"{model}: {file} is missing; retrain it")
        if file_sha256(path / file) != digest:
            raise ModelError(f"{model}: {file} was modified after it was saved (sha256 mismatch); retrain it")


# What reading a damaged or foreign head file raises, from zipfile, json, skops, safetensors and torch.
_DAMAGED = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError, RecursionError,
            NotImplementedError, zipfile.BadZipFile, zlib.error)


def _read_head(model: str, path: Path, head: dict[str, Any]) -> Any:
    if head.get("format") == "skops":
        return _read_skops(model, path / SKOPS_FILE)
    if head.get("format") == "safetensors":
        return _read_torch(model, path, _allowed_torch_head(model, head.get("class", "")))
    raise ModelError(f"{model}: unknown head format {head.get('format')!r}; formats: skops, safetensors")


def _read_skops(model: str, file: Path) -> Any:
    """The head in ``file``, built only once its schema holds nothing but allowed types and node kinds."""
    import skops.io as sio

    data = file.read_bytes()
    try:
        refused = skops_refusals(data)
    except _DAMAGED as exc:
        raise ModelError(f"{model}: {file.name} is damaged or not a skops archive ({_first_line(exc)}); retrain it") from None
    if refused:
        raise ModelError(
            f"{model}: {file.name} holds types that no head of this project saves ({', '.join(map(repr, refused[:3]))}); "
            "it is not loaded. Load models only from stores you trust, or retrain it"
        )
    try:
        return sio.loads(data, trusted=sorted(SKOPS_TYPES))
    except _DAMAGED as exc:
        raise ModelError(f"{model}: {file.name} is damaged ({_first_line(exc)}); retrain it") from None


def skops_refusals(data: bytes) -> list[str]:
    """What in a skops archive is outside ``SKOPS_TYPES`` / ``SKOPS_NODES``, sorted (empty: loadable).

    Read from ``schema.json`` alone (nothing is imported or built), every node of the tree, then
    checked again by skops's own audit: its defaults trust far more (every scikit-learn estimator,
    numpy and scipy ufuncs as functions), which the schema walk does not. A damaged archive raises
    one of ``_DAMAGED`` (``BadZipFile``, ``KeyError`` for a missing schema, ``ValueError`` ...).
    """
    import skops.io as sio

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        schema = json.loads(archive.read("schema.json"))
    refused: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, dict):
            if "__loader__" in node:
                kind, type_name = str(node["__loader__"]), f"{node.get('__module__')}.{node.get('__class__')}"
                if kind not in SKOPS_NODES:
                    refused.add(f"{type_name} ({kind})")
                elif type_name not in SKOPS_TYPES:
                    refused.add(type_name)
            stack.extend(node.values())
    if not refused:  # skops builds its audit tree only from a schema of known node kinds and types
        refused.update(t for t in sio.get_untrusted_types(data=data) if t not in SKOPS_TYPES)
    return sorted(refused)


def _read_torch(model: str, path: Path, cls: type) -> Any:
    """A torch head from its tensors (safetensors: no pickle) and its JSON config."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path / TORCH_FILE))
    except (SafetensorError, *_DAMAGED) as exc:
        raise ModelError(f"{model}: {TORCH_FILE} is damaged or not a safetensors file ({_first_line(exc)}); retrain it") from None
    try:
        config = json.loads((path / TORCH_CONFIG).read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{model}: {TORCH_CONFIG} cannot be read ({_first_line(exc)}); retrain it") from None
    try:
        return cls.from_state(tensors, config)
    except FeatureStoreError as exc:
        raise ModelError(f"{model}: {TORCH_CONFIG} does not describe a {cls.__name__} ({exc}); retrain it") from None
    except _DAMAGED as exc:
        raise ModelError(f"{model}: {TORCH_FILE} and {TORCH_CONFIG} do not make a {cls.__name__} ({_first_line(exc)}); retrain it") from None


def _first_line(exc: BaseException) -> str:
    """An exception's message cut to one short line: a damaged file's errors can run to pages."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _allowed_torch_head(model: str, class_path: Any) -> type:
    """The torch head class named in the manifest, only when it is on the allow-list."""
    if not isinstance(class_path, str):
        raise ModelError(f"{model}: head class {class_path!r} is not an allowed torch head; it is not loaded")
    if class_path in _TORCH_HEADS:
        return _TORCH_HEADS[class_path]
    if class_path in TORCH_HEAD_CLASSES:
        module, _, attr = class_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    raise ModelError(f"{model}: head class {class_path!r} is not an allowed torch head; it is not loaded")


# -------------------------------------------------------------------------- list, encoders


def list_models(store: Store | str | None) -> list[dict[str, Any]]:
    """One row per saved version: name, version, task, metrics, created_at, encoders."""
    store = store if isinstance(store, Store) else Store(store)
    base = store.fetch("models", marker="manifest.json", names=LISTED)
    rows = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for version in model_versions(folder):
            try:
                manifest = _read_manifest(f"model {folder.name} v{version}", folder / str(version))
            except ModelError as exc:
                rows.append({"name": folder.name, "version": version, "error": str(exc)})
                continue
            metrics, training, encoders = (manifest.get(k) for k in ("metrics", "training_set", "encoders"))
            rows.append(
                {
                    "name": folder.name,
                    "version": version,
                    "task": manifest.get("task"),
                    "metrics": metrics if isinstance(metrics, dict) else {},
                    "created_at": manifest.get("created_at"),
                    "encoders": [e.get("encoder_id") for e in encoders if isinstance(e, dict)] if isinstance(encoders, list) else [],
                    "rows": training.get("rows") if isinstance(training, dict) else None,
                }
            )
    return rows


def newest_records(store: Store | str | None) -> list[dict[str, Any]]:
    """The newest version of each saved model as plain JSON, without reading its head: one dict
    per model with ``name``, ``version``, ``manifest``, ``report`` (report.json) and
    ``evaluations`` (evaluations.json, ``[]`` when never evaluated), or ``name``, ``version`` and
    ``error`` (one line ending in what to do) when a file of the version cannot be read."""
    store = store if isinstance(store, Store) else Store(store)
    base = store.fetch("models", marker="manifest.json", names=(*LISTED, EVALUATIONS_FILE))
    records = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        versions = model_versions(folder)
        if not versions:
            continue
        name, version, path = folder.name, versions[-1], folder / str(versions[-1])
        try:
            manifest = _read_manifest(f"model {name} v{version}", path)
            report = json.loads((path / "report.json").read_text())
        except ModelError as exc:
            records.append({"name": name, "version": version, "error": str(exc).removeprefix(f"model {name} v{version}: ")})
            continue
        except (OSError, ValueError, RecursionError) as exc:
            records.append({"name": name, "version": version, "error": f"report.json cannot be read ({_first_line(exc)}); retrain it"})
            continue
        if not isinstance(report, dict):
            records.append({"name": name, "version": version, "error": "manifest.json or report.json is not a JSON object; retrain it"})
            continue
        records.append({"name": name, "version": version, "manifest": manifest, "report": report, "evaluations": _evaluations(path)})
    return records


def _evaluations(path: Path) -> list[dict[str, Any]] | str:
    """The entries of a version's evaluations.json, or why it cannot be read."""
    file = path / EVALUATIONS_FILE
    if not file.is_file():
        return []
    try:
        entries = json.loads(file.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        return f"evaluations.json cannot be read ({_first_line(exc)}); evaluate again"
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("metrics"), dict)] if isinstance(entries, list) else []


# Each task's main metrics first: the manifest's keys are sorted, which would put baselines (bm25_*) first.
_HEADLINE_FIRST = ("f1", "entity_f1", "ndcg@10", "mrr@10", "recall@100", "accuracy", "macro_f1", "precision", "recall", "roc_auc")
_BASELINE_PREFIXES = ("baseline_", "bm25_", "dense_", "frozen_", "majority_")


def headline_metrics(metrics: dict[str, Any], n: int = 3) -> dict[str, float]:
    """The ``n`` numbers a listing shows for a model: the task's own metrics before its baselines'."""
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    first = [k for k in _HEADLINE_FIRST if k in numbers]
    own = [k for k in numbers if k not in first and not k.startswith(_BASELINE_PREFIXES)]
    rest = [k for k in numbers if k not in first and k not in own]
    return {k: float(numbers[k]) for k in (first + own + rest)[:n]}


def model_encoders(loaded: LoadedModel) -> list[BaseEncoder]:
    """The model's encoders rebuilt from their refs; refuses one whose encoder_id now differs."""
    encoders = []
    entries = loaded.manifest.get("encoders", [])
    for entry in entries if isinstance(entries, list) else [entries]:
        if not (isinstance(entry, dict) and isinstance(entry.get("encoder_ref", ""), (str, type(None)))
                and isinstance(entry.get("encoder_options") or {}, dict) and isinstance(entry.get("encoder_id"), str)):
            raise ModelError(f"model {loaded.name} v{loaded.version}: manifest.json's encoders are not encoder records; retrain it")
        encoders.append(from_meta(entry.get("encoder_ref"), entry.get("encoder_options"), expect_id=entry["encoder_id"],
                                  owner=f"model {loaded.name} v{loaded.version}"))
    return encoders


# ------------------------------------------------------------------------------ helpers


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays, paths and times in reports become plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (Path, datetime)):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")

