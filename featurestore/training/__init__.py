"""Training sets: labels joined to stored features point-in-time, split deterministically (labels in
:mod:`~featurestore.training.labels`, joins in :mod:`~featurestore.training.joins`, splits in
:mod:`~featurestore.training.splits`; this module builds the set and its manifest).

A training set is read-only over the store: it scans the Delta history (never the snapshot
cache, which a read of the newest version would write) and returns numpy arrays plus a
:class:`TrainingManifest` that names the table versions, arguments and content hashes, so that
:func:`training_set_from_manifest` rebuilds the identical set later, whatever was written since.
Every head records its training data in that one shape (:func:`make_manifest`): the NER heads'
sentences and the ranking head's judgments too, so that retraining policy
(:func:`models.registry.needs_retrain`) reads one contract.

Labels come from a kept column of the view (``labels="label"``) or from a separate file or
DataFrame of ``(entity_id, label[, event_timestamp])``. With label times, each label gets the
newest feature row of its entity whose event time is at or before the label's time (a DuckDB
ASOF JOIN), never a later one, so a model cannot learn from values written after the fact.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.errors import InvalidArgumentError, SourceError, StoreError
from featurestore.manifest import TrainingManifest, encoder_entry, make_manifest
from featurestore.store import FeatureTable, Store
from featurestore.store.codec import embeddings_to_numpy
from featurestore.store.latest import latest_mask
from featurestore.store.table import AsOf
from featurestore.training.joins import join_rows, kept_columns, take
from featurestore.training.labels import check_label_column, check_label_values, check_missing, labels_file, read_label_frame
from featurestore.training.splits import check_split_kind, split_groups, split_rows

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TrainingSet", "check_arguments", "training_set", "training_set_from_manifest"]

_AS_OF_VERSION_WITH_EXTRAS = "as_of as a version number names one table's version; with extra_encoders pass a time (ISO 8601)"
_HISTORY_COLUMNS = ["entity_id", "content_hash", "event_timestamp", "created_at", "deleted", "embedding"]


@dataclass
class TrainingSet:
    """Features, labels and a deterministic split, row-aligned.

    ``ids`` ``(n,) object`` entity ids; ``X`` ``(n, d) float32`` (several encoders side by side
    when asked); ``y`` ``(n,)`` labels as stored; ``groups`` ``(n,)`` the unit no split cuts
    through; ``folds`` ``(n,) int64`` the cross-validation fold each row is tested in (None when
    ``test_size`` asked for one train/test split, then ``train``/``test`` are ``(n,) bool``);
    ``columns`` the view's kept columns (and ``content_hash``); ``manifest`` rebuilds the set;
    ``encoders`` the TrainResult ``encoders`` entries of the tables whose features fill ``X``.
    """

    ids: np.ndarray
    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    folds: np.ndarray | None
    train: np.ndarray | None
    test: np.ndarray | None
    columns: pd.DataFrame
    manifest: TrainingManifest
    warnings: list[str] = field(default_factory=list)
    encoders: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def splits(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(train_index, test_index)`` pairs: one per fold, or the single train/test split.

        Usable as scikit-learn's ``cv=`` argument.
        """
        if self.folds is None:
            return [(np.flatnonzero(self.train), np.flatnonzero(self.test))]
        return [(np.flatnonzero(self.folds != k), np.flatnonzero(self.folds == k)) for k in range(int(self.folds.max()) + 1)]


def training_set(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    labels: str | os.PathLike[str] | pd.DataFrame = "label",
    label_col: str = "label",
    id_col: str = "entity_id",
    time_col: str | None = None,
    as_of: AsOf = None,
    split: str = "stratified",
    n_splits: int = 5,
    test_size: float | None = None,
    seed: int = 0,
    strict: bool = False,
    extra_encoders: Sequence[str] = (),
) -> TrainingSet:
    """Join labels to the features of ``view`` and split them deterministically.

    Parameters
    ----------
    view, encoder : the feature table (encoder name or id; None when the view has one).
    labels : a kept column of the view, or a CSV/TSV/Parquet/JSONL file (or DataFrame) holding
        ``id_col``, ``label_col`` and optionally a time column.
    time_col : the labels' time column; None uses ``event_timestamp`` when the file has one.
        With times, each label joins the newest feature row at or before its time.
    as_of : read the tables as of a version (int: one table only) or a time.
    split : ``stratified`` (by label, grouped by entity), ``text`` (grouped by content hash:
        identical texts never sit on both sides) or ``group:COLUMN`` (grouped by a column).
    n_splits, test_size : ``n_splits`` folds; or, with ``test_size``, one grouped train/test split.
    strict : labels whose entity has no feature row are an error instead of a warning.
    extra_encoders : more encoders of the same view whose features are concatenated to ``X``.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise InvalidArgumentError(f"seed must be an int from 0 to 2**32 - 1 (NumPy's seed range). Got {seed!r} instead.")
    arguments = {
        "view": view,
        "encoder": encoder,
        "labels": _labels_argument(labels),
        "label_col": label_col,
        "id_col": id_col,
        "time_col": time_col,
        "as_of": as_of if isinstance(as_of, (int, type(None))) else str(as_of),
        "split": split,
        "n_splits": n_splits,
        "test_size": test_size,
        "seed": seed,
        "strict": strict,
        "extra_encoders": list(extra_encoders),
    }
    return _build(arguments, Store.of(store), labels, pins=None)


# The arguments training_set() records: what training_set_from_manifest passes to it again.
_ARGUMENTS = ("view", "encoder", "labels", "label_col", "id_col", "time_col", "as_of", "split", "n_splits", "test_size", "seed",
              "strict", "extra_encoders")


def check_arguments(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    labels: str | os.PathLike[str] | pd.DataFrame | None = None,
    split: str = "stratified",
    n_splits: int = 5,
    as_of: AsOf = None,
    extra_encoders: Sequence[str] = (),
) -> None:
    """Refuse what :func:`training_set` would refuse for its arguments alone, reading no data file.

    The tables exist and join (view, encoder, extra encoders), a labels file exists or a label
    column is kept in the view, the split names a known kind, ``n_splits`` is a whole number of
    at least 2. A command runs this before it starts a flow, so these mistakes cost a second,
    not a Prefect start; what depends on the rows (labels that match nothing, one class) is
    still found while building the set. ``labels=None``: the caller takes no labels (nothing to check).
    """
    store = Store.of(store)
    tables = _tables(store, view, encoder, extra_encoders)
    if isinstance(as_of, int) and len(tables) > 1:
        raise InvalidArgumentError(_AS_OF_VERSION_WITH_EXTRAS)
    if labels is not None and not hasattr(labels, "columns"):
        path = labels_file(labels)
        if path is None:
            check_label_column(str(labels), view, tables[0].kept_columns())
        elif not path.is_file():
            raise SourceError(f"labels file not found: {path}")
    check_split_kind(split)
    if isinstance(n_splits, bool) or not isinstance(n_splits, int) or n_splits < 2:
        raise InvalidArgumentError(f"`n_splits` must be a whole number of at least 2 (and at most the number of groups). Got {n_splits!r} instead.")


def training_set_from_manifest(
    manifest: TrainingManifest | Mapping[str, Any], *, store: Store | str | None = None, labels: pd.DataFrame | None = None
) -> TrainingSet:
    """Rebuild the set a manifest describes, at the table versions it records, and check its hashes.

    ``manifest`` is a :class:`TrainingManifest` or its JSON (read strictly). ``labels`` is needed
    only when the set was built from a DataFrame (a file is re-read and must be unchanged).
    """
    manifest = manifest if isinstance(manifest, TrainingManifest) else TrainingManifest.from_dict(manifest)
    if manifest.kind != "training_set":
        raise InvalidArgumentError(f"a {manifest.kind} manifest is rebuilt by the head that wrote it, not by training_set_from_manifest")
    arguments = dict(manifest.arguments)
    missing = sorted(set(_ARGUMENTS) - set(arguments))
    if missing:
        raise StoreError(f"the training manifest's `arguments` lack {', '.join(missing)}; it was not written by training_set()")
    if arguments["labels"] == "<DataFrame>" and labels is None:
        raise SourceError("this training set was built from a DataFrame of labels; pass it again with `labels`")
    source = labels if labels is not None else arguments["labels"]
    pins = {t.encoder_id: t.version for t in manifest.tables}
    rebuilt = _build(arguments, Store.of(store), source, pins=pins)
    for key in ("content_sha256", "features_sha256"):
        if getattr(rebuilt.manifest, key) != getattr(manifest, key):
            raise StoreError(
                f"the training set of view {arguments['view']!r} does not rebuild identically ({key} differs); "
                "its labels or table history changed since the manifest was written"
            )
    return rebuilt


# ---------------------------------------------------------------------------- building


def _labels_argument(labels: str | os.PathLike[str] | pd.DataFrame) -> str:
    """How the manifest names the labels: a column name, an absolute file path, or ``<DataFrame>``."""
    import pandas as pd

    if isinstance(labels, pd.DataFrame):
        return "<DataFrame>"
    path = Path(labels)
    return str(path.absolute()) if path.exists() else os.fspath(labels)


def _build(arguments: dict[str, Any], store: Store, labels: Any, pins: dict[str, int] | None) -> TrainingSet:
    import pandas as pd

    view = arguments["view"]
    tables = _tables(store, view, arguments["encoder"], arguments["extra_encoders"])
    if isinstance(arguments["as_of"], int) and len(tables) > 1 and pins is None:
        raise InvalidArgumentError(_AS_OF_VERSION_WITH_EXTRAS)
    token_view = tables[0].meta.granularity == "token"
    extra_columns = _HISTORY_COLUMNS + (["token_index"] if token_view else [])
    histories = []
    for i, table in enumerate(tables):
        as_of = pins[table.meta.encoder_id] if pins else arguments["as_of"]
        histories.append(table.scan(None if i == 0 else extra_columns, as_of))
    primary, version = histories[0]
    live = primary.filter(latest_mask(primary, granularity=tables[0].meta.granularity)) if primary.num_rows else primary
    if live.num_rows == 0:
        raise StoreError(f"view {view!r} ({tables[0].meta.encoder_id}) has no live rows at version {version}; materialize it first")

    frame, label_info = read_label_frame(arguments, labels, primary, live)
    if token_view and label_info["source"] != "column":
        raise SourceError(f"view {view!r} is token-level: keep the tags as a column of the view and pass labels=COLUMN")
    rows = np.stack([join_rows(hist, frame, token_view) for hist, _ in histories])
    hashes = [take(hist.column("content_hash"), r).to_numpy(zero_copy_only=False) for (hist, _), r in zip(histories, rows)]
    found = (rows >= 0).all(axis=0) & np.all([h == hashes[0] for h in hashes], axis=0)
    missing = int((~found).sum())
    notes = check_missing(view, frame, found, missing, bool(arguments["strict"]), label_info)
    frame, rows, content_hash = frame[found].reset_index(drop=True), rows[:, found], hashes[0][found]
    if frame.empty:
        raise SourceError(f"none of the {len(found)} labels match a feature row of view {view!r}; check the ids and times")

    y = frame["label"].to_numpy()
    check_label_values(y, label_info.get("label_col", arguments["label_col"]))
    classes = pd.Series(y).value_counts().sort_index()
    if len(classes) < 2:
        raise SourceError(
            f"labels {arguments['label_col']!r} have one class only ({classes.index[0]!r}, {len(y)} rows); a classifier needs two or more"
        )
    X = np.hstack([embeddings_to_numpy(take(hist.column("embedding"), r), t.meta.dim) for (hist, _), r, t in zip(histories, rows, tables)])
    columns = kept_columns(primary, rows[0], frame)
    columns["content_hash"] = content_hash
    ids = frame["entity_id"].to_numpy(dtype=object)
    groups = split_groups(arguments["split"], ids, content_hash, columns)
    folds, train, test = split_rows(y, groups, arguments)
    label_info.update(missing=missing, classes={str(k): int(v) for k, v in classes.items()})
    manifest = make_manifest(
        [(t, v) for t, (_, v) in zip(tables, histories)],
        arguments=arguments,
        content_sha256=_content_sha256(ids, y, frame.get("label_time")),
        rows=len(ids),
        dim=int(X.shape[1]),
        labels=label_info,
        features_sha256=hashlib.sha256(np.ascontiguousarray(X, "<f4").tobytes()).hexdigest(),
    )
    return TrainingSet(ids, X, y, groups, folds, train, test, columns, manifest, notes, [encoder_entry(t) for t in tables])


def _tables(store: Store, view: str, encoder: str | None, extra: Sequence[str]) -> list[FeatureTable]:
    """The primary table and the extra encoders' tables of the same view, each once."""
    tables = [store.resolve_table(view, encoder)] + [store.resolve_table(view, e) for e in extra]
    ids = [t.meta.encoder_id for t in tables]
    if len(set(ids)) < len(ids):
        raise InvalidArgumentError(f"extra_encoders repeat an encoder of view {view!r} ({', '.join(ids)}); name each encoder once")
    kinds = {t.meta.granularity for t in tables}
    if len(kinds) > 1:
        raise StoreError(f"view {view!r} mixes granularities {sorted(kinds)} across encoders; join tables of one granularity")
    return tables


def _content_sha256(ids: np.ndarray, y: np.ndarray, times: pd.Series | None) -> str:
    """sha256 of the ids, labels (and label times) in row order: the identity of the set."""
    stamps = times.astype(str).tolist() if times is not None else [""] * len(ids)
    text = "\n".join(f"{i}\t{label}\t{t}" for i, label, t in zip(ids.tolist(), y.tolist(), stamps))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
