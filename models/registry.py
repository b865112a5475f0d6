"""The model registry: trained heads under ``<store root>/models/<name>/<version>/``.

Each version folder holds::

    head.skops                     a scikit-learn head (skops: no pickle), or
    head.safetensors + head.json   a torch head's tensors and its config
    manifest.json                  task, name, version, training-set manifest, encoders, params,
                                   metrics, created_at, head format and class, sha256 of every file
    report.json                    the whole evaluation

Loading never runs untrusted code: skops loads only types on an allow-list (scikit-learn,
numpy, scipy), and torch heads are rebuilt from tensors by a class on an allow-list. Every file is
checked against the sha256 in its manifest first, so a file changed after saving is refused.

Torch heads agree to this contract: the head object (the scikit-learn style wrapper that
TrainResult carries) is listed in ``TORCH_HEAD_CLASSES`` (or registered with :func:`torch_head`,
e.g. by a plugin or a test) and exposes

- ``state_tensors() -> dict[str, torch.Tensor]``: everything learned;
- ``config() -> dict``: JSON-able constructor arguments and label names;
- classmethod ``from_state(tensors, config)``: the fitted head again.

Versions are integers 1, 2, ...; a version is written to a hidden temporary folder and renamed
into place, so a crash leaves no half-written version. Heads are saved byte-for-byte
deterministically (skops zip members get canonical names and a fixed timestamp), so training
twice from the same manifest gives identical files.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
import shutil
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from featurestore.encoders import BaseEncoder, get_encoder
from featurestore.errors import EncoderError, NotFoundError, StoreError
from featurestore.store import Store
from featurestore.store.schema import check_view_name
from models.base import LoadedModel, TrainResult

__all__ = ["ModelError", "head_files", "list_models", "load_model", "model_encoders", "save_model", "torch_head"]

SKOPS_FILE = "head.skops"
TORCH_FILE = "head.safetensors"
TORCH_CONFIG = "head.json"
LISTED = ("manifest.json", "report.json")  # what listing a remote store's models fetches (not the heads)
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.")
# this package's own scikit-learn style wrappers that skops may rebuild (plain attributes, no code)
TRUSTED_HEAD_TYPES = ("models.tagging.TokenLogisticRegression", "models.ner.TokenLogisticRegression")
TORCH_HEAD_CLASSES = (
    "models.tagging.TorchTokenClassifier",
    "models.ner.TorchTokenClassifier",  # saved before the heads moved to models.tagging
    "models.finetuned.FineTunedImageClassifier",
    "models.finetuned.FineTunedTextClassifier",
    "models.finetune.FineTunedImageClassifier",  # saved before the classifiers moved to models.finetuned
    "models.finetune.FineTunedTextClassifier",
)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_SKOPS_IDS = re.compile(r'("__id__": )(\d+)|"(\d+)\.npy"')
_TORCH_HEADS: dict[str, type] = {}

H = TypeVar("H", bound=type)


class ModelError(StoreError):
    """A saved model cannot be found, read or trusted (missing, tampered, unknown type)."""


class UnknownModelError(ModelError, NotFoundError):
    """No model, or no such version of it, in the store."""


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
    tmp = folder / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        head_info = _write_head(tmp, result.head)
        (tmp / "report.json").write_text(_json(result.report))
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
    return LoadedModel(name=name, version=version, path=folder / str(version), head=result.head, manifest=manifest, store=store.root)


def _write_head(folder: Path, head: Any) -> dict[str, str]:
    path = _class_path(type(head))
    if path in _TORCH_HEADS or path in TORCH_HEAD_CLASSES:
        from safetensors.torch import save_file

        tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_tensors().items()}
        save_file(tensors, str(folder / TORCH_FILE))
        (folder / TORCH_CONFIG).write_text(_json(head.config()))
        return {"format": "safetensors", "class": path}
    import skops.io as sio

    (folder / SKOPS_FILE).write_bytes(canonical_skops(sio.dumps(head)))
    return {"format": "skops", "class": path}


def head_files(folder: Path, head: Any) -> dict[str, str]:
    """Write ``head``'s files into ``folder`` as :func:`save_model` does; their sha256 by file name."""
    _write_head(folder, head)
    return {p.name: _sha256(p) for p in sorted(folder.iterdir())}


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
        "training_set": result.training_manifest,
        "params": result.params,
        "metrics": result.metrics,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {p.name: _sha256(p) for p in sorted(folder.iterdir()) if p.name != "manifest.json"},
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
    path = store.path / "models" / name / str(versions[-1]) / "manifest.json"
    try:
        return versions[-1], json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {name} v{versions[-1]}: manifest.json cannot be read ({exc}); retrain it") from None


# --------------------------------------------------------------------------------- load


def load_model(store: Store | str | None, name: str, version: int | None = None) -> LoadedModel:
    """Model ``name`` at ``version`` (the newest when None), its files verified against the manifest."""
    store = store if isinstance(store, Store) else Store(store)
    folder = store.fetch(f"models/{check_view_name(name)}", marker="manifest.json", names=LISTED)
    versions = model_versions(folder)
    if not versions:
        known = ", ".join(m["name"] for m in list_models(store)) or "none yet"
        raise UnknownModelError(f"no model {name!r} in {store.root}; models: {known}")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise UnknownModelError(f"model {name!r} has no version {version}; versions: {', '.join(map(str, versions))}")
    path = store.fetch(f"models/{name}/{version}", marker="manifest.json")  # the head files too
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {name} v{version}: manifest.json cannot be read ({exc}); retrain it") from None
    _verify(name, version, path, manifest)
    head = _read_head(name, version, path, manifest.get("head", {}))
    return LoadedModel(name=name, version=version, path=path, head=head, manifest=manifest, store=store.root)


def _verify(name: str, version: int, path: Path, manifest: dict[str, Any]) -> None:
    """Refuse a version whose files differ from the sha256 its manifest recorded."""
    files = manifest.get("files") or {}
    present = {p.name for p in path.iterdir()} - {"manifest.json"}
    added = sorted(present - set(files))
    if added:
        raise ModelError(f"model {name} v{version}: {added[0]} was added after it was saved; remove it or retrain")
    for file, digest in files.items():
        if not (path / file).is_file():
            raise ModelError(f"model {name} v{version}: {file} is missing; retrain it")
        if _sha256(path / file) != digest:
            raise ModelError(f"model {name} v{version}: {file} was modified after it was saved (sha256 mismatch); retrain it")


def _read_head(name: str, version: int, path: Path, head: dict[str, str]) -> Any:
    if head.get("format") == "skops":
        return _read_skops(name, version, path / SKOPS_FILE)
    if head.get("format") == "safetensors":
        cls = _allowed_torch_head(name, version, head.get("class", ""))
        from safetensors.torch import load_file

        return cls.from_state(load_file(str(path / TORCH_FILE)), json.loads((path / TORCH_CONFIG).read_text()))
    raise ModelError(f"model {name} v{version}: unknown head format {head.get('format')!r}; formats: skops, safetensors")


def _read_skops(name: str, version: int, file: Path) -> Any:
    import skops.io as sio

    data = file.read_bytes()
    untrusted = sio.get_untrusted_types(data=data)
    refused = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES) and t not in TRUSTED_HEAD_TYPES]
    if refused:
        raise ModelError(
            f"model {name} v{version}: {file.name} holds types outside scikit-learn, numpy and scipy "
            f"({', '.join(refused[:3])}); it is not loaded"
        )
    return sio.loads(data, trusted=untrusted)


def _allowed_torch_head(name: str, version: int, class_path: str) -> type:
    """The torch head class named in the manifest, only when it is on the allow-list."""
    if class_path in _TORCH_HEADS:
        return _TORCH_HEADS[class_path]
    if class_path in TORCH_HEAD_CLASSES:
        module, _, attr = class_path.rpartition(".")
        return getattr(importlib.import_module(module), attr)
    raise ModelError(f"model {name} v{version}: head class {class_path!r} is not an allowed torch head; it is not loaded")


# -------------------------------------------------------------------------- list, encoders


def list_models(store: Store | str | None) -> list[dict[str, Any]]:
    """One row per saved version: name, version, task, metrics, created_at, encoders."""
    store = store if isinstance(store, Store) else Store(store)
    base = store.fetch("models", marker="manifest.json", names=LISTED)
    rows = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for version in model_versions(folder):
            try:
                manifest = json.loads((folder / str(version) / "manifest.json").read_text())
            except (OSError, ValueError):
                rows.append({"name": folder.name, "version": version, "error": "manifest.json cannot be read"})
                continue
            rows.append(
                {
                    "name": folder.name,
                    "version": version,
                    "task": manifest.get("task"),
                    "metrics": manifest.get("metrics", {}),
                    "created_at": manifest.get("created_at"),
                    "encoders": [e.get("encoder_id") for e in manifest.get("encoders", [])],
                    "rows": manifest.get("training_set", {}).get("rows"),
                }
            )
    return rows


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
    for entry in loaded.manifest.get("encoders", []):
        ref = entry.get("encoder_ref")
        if not ref:
            raise EncoderError(f"model {loaded.name} v{loaded.version} does not record how to rebuild encoder {entry.get('encoder_id')}")
        try:
            enc = get_encoder(ref, **(entry.get("encoder_options") or {}))
            have = enc.encoder_id
        except (EncoderError, OSError) as exc:
            raise EncoderError(f"model {loaded.name} v{loaded.version} needs encoder {ref!r}, which is not available here: {exc}") from None
        if have != entry["encoder_id"]:
            raise EncoderError(
                f"model {loaded.name} v{loaded.version} was trained on encoder {entry['encoder_id']}, but {ref!r} is "
                f"{have} here; its weights differ, so inputs cannot be encoded the same way"
            )
        encoders.append(enc)
    return encoders


# ------------------------------------------------------------------------------ helpers


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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

