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
- the head files are read by :mod:`models.headfiles`, which builds a skops head only from an exact
  list of types and a torch head only from tensors and an allowed class.

Versions are integers 1, 2, ...; a version is written to a hidden temporary folder and renamed
into place, so a crash leaves no half-written version, and the next save of the name removes the
killed writer's temporary folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurestore.encoders import BaseEncoder, from_meta
from featurestore.errors import ModelError, StoreError, UnknownModelError
from featurestore.manifest import TrainingManifest
from featurestore.sources.content import file_sha256
from featurestore.store import Store
from featurestore.store.schema import check_view_name
from models import headfiles, novelty
from models.base import LoadedModel, TrainResult

__all__ = [
    "list_models",
    "load_model",
    "model_encoders",
    "needs_retrain",
    "newest_records",
    "save_evaluation",
    "save_model",
]

EVALUATIONS_FILE = "evaluations.json"
LISTED = ("manifest.json", "report.json")  # what listing a remote store's models fetches (not the heads)
MODEL_FILES = frozenset({headfiles.SKOPS_FILE, headfiles.TORCH_FILE, headfiles.TORCH_CONFIG, "report.json", novelty.FILE})  # what a version's manifest may list


# --------------------------------------------------------------------------------- save


def save_model(name: str, result: TrainResult, *, store: Store | str | None = None) -> LoadedModel:
    """Write ``result`` as the next version of model ``name`` and return it as loaded."""
    store = Store.of(store)
    check_view_name(name)
    store.ensure_writable()
    folder = store.fetch(f"models/{name}", marker="manifest.json", names=LISTED)  # a remote store's versions count too
    folder.mkdir(parents=True, exist_ok=True)
    with _writing(folder):
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            head_info = headfiles.write_head(tmp, result.head)
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


def save_evaluation(model: LoadedModel, evaluation: dict[str, Any], *, store: Store | str | None = None) -> Path:
    """Add ``evaluation`` (one :func:`models.evaluation.evaluate` result) to the version's
    ``evaluations.json``, replacing an earlier one of the same input (``input_sha256``).

    The file is written beside the version folder under the model's writer lock and renamed
    into place, so a reader sees the old list or the new one; a list that cannot be read is
    replaced. Returns the file's path.
    """
    store = Store.of(store)
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


def newest_manifest(name: str, *, store: Store | str | None = None) -> tuple[int, dict[str, Any]] | None:
    """The newest version of model ``name`` and its manifest.json, without loading the head (None: never saved)."""
    store = Store.of(store)
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
    store = Store.of(store)
    try:
        saved = newest_manifest(name, store=store)
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


def load_model(name: str, version: int | None = None, *, store: Store | str | None = None) -> LoadedModel:
    """Model ``name`` at ``version`` (the newest when None), its files verified against the manifest."""
    store = Store.of(store)
    folder = store.fetch(f"models/{check_view_name(name)}", marker="manifest.json", names=LISTED)
    versions = model_versions(folder)
    if not versions:
        from featurestore.store.catalog import did_you_mean

        names = sorted({m["name"] for m in list_models(store=store)})
        raise UnknownModelError(f"no model {name!r} in {store.root}; models: {', '.join(names) or 'none yet'}{did_you_mean(name, names)}")
    version = versions[-1] if version is None else version
    if version not in versions:
        raise UnknownModelError(f"model {name!r} has no version {version}; versions: {', '.join(map(str, versions))}")
    path = store.fetch(f"models/{name}/{version}", marker="manifest.json")  # the head files too
    model = f"model {name} v{version}"
    manifest = _read_manifest(model, path)
    _check_training(model, manifest)
    _verify(model, path, manifest["files"])
    head = headfiles.read_head(model, path, manifest["head"])
    return LoadedModel(name=name, version=version, path=path, head=head, manifest=manifest, store=store.root,
                       novelty=novelty.load(model, path, manifest))


def _read_manifest(model: str, path: Path) -> dict[str, Any]:
    """The manifest of the version folder ``path``, once the folder holds only plain files."""
    _refuse_links(model, path)
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise ModelError(f"{model}: manifest.json cannot be read ({headfiles.first_line(exc)}); retrain it") from None
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


# -------------------------------------------------------------------------- list, encoders


def list_models(*, store: Store | str | None = None) -> list[dict[str, Any]]:
    """One row per saved version: name, version, task, metrics, created_at, encoders."""
    store = Store.of(store)
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


def newest_records(*, store: Store | str | None = None) -> list[dict[str, Any]]:
    """The newest version of each saved model as plain JSON, without reading its head: one dict
    per model with ``name``, ``version``, ``manifest``, ``report`` (report.json) and
    ``evaluations`` (evaluations.json, ``[]`` when never evaluated), or ``name``, ``version`` and
    ``error`` (one line ending in what to do) when a file of the version cannot be read."""
    store = Store.of(store)
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
            records.append({"name": name, "version": version, "error": f"report.json cannot be read ({headfiles.first_line(exc)}); retrain it"})
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
        return f"evaluations.json cannot be read ({headfiles.first_line(exc)}); evaluate again"
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


def _json(value: Any) -> str:
    return headfiles.to_json(value)
