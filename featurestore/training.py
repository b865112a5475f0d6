"""Training sets: labels joined to stored features point-in-time, split deterministically.

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
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import InvalidArgumentError, SourceError, StoreError
from featurestore.manifest import TrainingManifest, encoder_entry, make_manifest
from featurestore.store import FeatureTable, Store
from featurestore.sources.content import file_sha256
from featurestore.store.codec import embeddings_to_numpy
from featurestore.store.latest import latest_mask, newest
from featurestore.store.schema import SYSTEM_COLUMNS
from featurestore.store.table import AsOf

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["TrainingSet", "check_arguments", "training_set", "training_set_from_manifest"]

LABEL_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
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
    return _build(arguments, store if isinstance(store, Store) else Store(store), labels, pins=None)


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
    store = store if isinstance(store, Store) else Store(store)
    tables = _tables(store, view, encoder, extra_encoders)
    if isinstance(as_of, int) and len(tables) > 1:
        raise InvalidArgumentError(_AS_OF_VERSION_WITH_EXTRAS)
    if labels is not None and not hasattr(labels, "columns"):
        path = _labels_file(labels)
        if path is None:
            _check_label_column(str(labels), view, tables[0].kept_columns())
        elif not path.is_file():
            raise SourceError(f"labels file not found: {path}")
    _check_split_kind(split)
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
    rebuilt = _build(arguments, store if isinstance(store, Store) else Store(store), source, pins=pins)
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

    frame, label_info = _labels(arguments, labels, primary, live)
    if token_view and label_info["source"] != "column":
        raise SourceError(f"view {view!r} is token-level: keep the tags as a column of the view and pass labels=COLUMN")
    rows = np.stack([_join(hist, frame, token_view) for hist, _ in histories])
    hashes = [_take(hist.column("content_hash"), r).to_numpy(zero_copy_only=False) for (hist, _), r in zip(histories, rows)]
    found = (rows >= 0).all(axis=0) & np.all([h == hashes[0] for h in hashes], axis=0)
    missing = int((~found).sum())
    notes = _check_missing(view, frame, found, missing, bool(arguments["strict"]), label_info)
    frame, rows, content_hash = frame[found].reset_index(drop=True), rows[:, found], hashes[0][found]
    if frame.empty:
        raise SourceError(f"none of the {len(found)} labels match a feature row of view {view!r}; check the ids and times")

    y = frame["label"].to_numpy()
    _check_label_values(y, label_info.get("label_col", arguments["label_col"]))
    classes = pd.Series(y).value_counts().sort_index()
    if len(classes) < 2:
        raise SourceError(
            f"labels {arguments['label_col']!r} have one class only ({classes.index[0]!r}, {len(y)} rows); a classifier needs two or more"
        )
    X = np.hstack([embeddings_to_numpy(_take(hist.column("embedding"), r), t.meta.dim) for (hist, _), r, t in zip(histories, rows, tables)])
    columns = _kept_columns(primary, rows[0], frame)
    columns["content_hash"] = content_hash
    ids = frame["entity_id"].to_numpy(dtype=object)
    groups = _groups(arguments["split"], ids, content_hash, columns)
    folds, train, test = _split(y, groups, arguments)
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


# ------------------------------------------------------------------------------ labels


def _labels(arguments: dict[str, Any], labels: Any, primary: pa.Table, live: pa.Table) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(frame, info)``: a frame of ``entity_id, label[, label_time][, token_index]`` plus extras."""
    import pandas as pd

    label_col = arguments["label_col"]
    if isinstance(labels, pd.DataFrame):
        return _label_frame(labels, arguments, "the labels DataFrame"), {"source": "frame", "label_col": label_col}
    path = _labels_file(labels)
    if path is None:
        return _column_labels(str(labels), arguments["view"], primary, live)
    if not path.is_file():
        raise SourceError(f"labels file not found: {path}")
    digest = file_sha256(path)
    frame = _label_frame(_read_labels(path, arguments["id_col"]), arguments, str(path))
    return frame, {"source": "file", "path": str(path.absolute()), "sha256": digest, "label_col": label_col}


def _labels_file(labels: str | os.PathLike[str]) -> Path | None:
    """The labels file ``labels`` names (a label file's suffix, or an existing path), None for a column name."""
    path = Path(labels)
    return path if path.suffix.lower() in LABEL_FORMATS or path.exists() else None


def _check_label_column(column: str, view: str, kept: list[str]) -> None:
    if column not in kept:
        raise SourceError(
            f"label column {column!r} is not a kept column of view {view!r}; its columns are: {', '.join(kept) or 'none'} "
            "(pass labels=FILE for labels kept elsewhere)"
        )


def _column_labels(column: str, view: str, primary: pa.Table, live: pa.Table) -> tuple[pd.DataFrame, dict[str, Any]]:
    kept = [c for c in primary.column_names if c not in SYSTEM_COLUMNS]
    _check_label_column(column, view, kept)
    keys = ["entity_id"] + (["token_index"] if "token_index" in kept else [])
    frame = live.select([*keys, column]).to_pandas().rename(columns={column: "label"})
    frame = frame.sort_values(keys, kind="stable").reset_index(drop=True)
    unlabelled = int(frame["label"].isna().sum())
    return frame[frame["label"].notna()].reset_index(drop=True), {"source": "column", "label_col": column, "unlabelled": unlabelled}


def _read_labels(path: Path, id_col: str) -> pd.DataFrame:
    import pandas as pd

    fmt = LABEL_FORMATS.get(path.suffix.lower(), "csv")
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype={id_col: str})
        return pd.read_csv(path, sep="\t" if fmt == "tsv" else ",", dtype={id_col: str})
    except (ValueError, OSError, ImportError) as exc:
        raise SourceError(f"cannot read labels file {path} as {fmt}: {exc}") from None


def _label_frame(raw: pd.DataFrame, arguments: dict[str, Any], where: str) -> pd.DataFrame:
    """Rename to ``entity_id, label[, label_time]``, ids as strings, times as UTC; drop unlabelled rows."""
    import pandas as pd

    id_col, label_col, time_col = arguments["id_col"], arguments["label_col"], arguments["time_col"]
    time_col = time_col or ("event_timestamp" if "event_timestamp" in raw.columns else None)
    for role, col in (("id", id_col), ("label", label_col), ("time", time_col)):
        if col is not None and col not in raw.columns:
            raise SourceError(f"{where}: {role} column {col!r} not found; the columns are: {', '.join(map(str, raw.columns))}")
    frame = raw.rename(columns={id_col: "entity_id", label_col: "label"})
    frame["entity_id"] = frame["entity_id"].astype(str)
    if time_col is not None:
        try:
            frame["label_time"] = pd.to_datetime(frame.pop(time_col), utc=True, format="ISO8601")
        except (ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0]
            raise SourceError(f"{where}: time column {time_col!r} holds a value that is not a time ({reason}); use ISO 8601") from None
    return frame[frame["label"].notna()].reset_index(drop=True)


def _check_label_values(y: np.ndarray, label_col: str) -> None:
    """A label names one class: a list or mapping (no class counts, no split) or a fractional
    number (a regression target: every value its own class) is refused, with an example."""
    for value in y:
        if isinstance(value, (list, tuple, dict, np.ndarray)):
            shown = str(value.tolist() if isinstance(value, np.ndarray) else value)[:40]
            raise SourceError(
                f"labels {label_col!r} hold {'list' if isinstance(value, (tuple, np.ndarray)) else type(value).__name__}s "
                f"(e.g. {shown}); a label is one class per row (a string or an integer): pick another label column or flatten it"
            )
    numbers = np.array([v for v in y if isinstance(v, (float, np.floating))], dtype=np.float64)
    fractional = numbers[~np.isfinite(numbers) | (numbers != np.round(numbers))]
    if len(fractional):
        raise SourceError(
            f"labels {label_col!r} hold numbers that are not whole (e.g. {float(fractional[0])!r}); a label names a class: "
            "use strings or integers (a continuous target is not a classification label)"
        )


def _check_missing(view: str, frame: pd.DataFrame, found: np.ndarray, missing: int, strict: bool, info: dict[str, Any]) -> list[str]:
    """Labels without a feature row: an error when strict, else one warning (and the count in the manifest)."""
    if not missing:
        return []
    example = frame["entity_id"].iloc[int(np.flatnonzero(~found)[0])]
    when = " at or before their time" if "label_time" in frame.columns else ""
    message = (
        f"{missing} of {len(frame)} labels have no feature row in view {view!r}{when} (e.g. entity {example!r}); "
        "materialize those entities or drop their labels"
    )
    if strict:
        raise SourceError(message)
    warnings.warn(message, UserWarning, stacklevel=3)
    info["missing_example"] = example
    return [message]


# -------------------------------------------------------------------------------- joins


def _join(hist: pa.Table, frame: pd.DataFrame, token_view: bool) -> np.ndarray:
    """``(n_labels,) int64`` row of ``hist`` each label joins (-1: none)."""
    if "label_time" in frame.columns:
        return _asof_rows(hist, frame)
    live = np.flatnonzero(latest_mask(hist, granularity="token" if token_view else "sentence").to_numpy(zero_copy_only=False)) if hist.num_rows else np.zeros(0, np.int64)
    keys = ["entity_id"] + (["token_index"] if token_view else [])
    index = hist.select(keys).take(pa.array(live)).to_pandas()
    index["row"] = live
    merged = frame[keys].merge(index, on=keys, how="left", validate="many_to_one")
    return merged["row"].fillna(-1).to_numpy(np.int64)


def _asof_rows(hist: pa.Table, frame: pd.DataFrame) -> np.ndarray:
    """The newest row per label whose event time is at or before the label's time (tombstones: -1).

    Rows with the same entity and event time (a re-run that changed the content) resolve to
    the newest of them (:func:`featurestore.store.latest.newest`).
    """
    import duckdb

    ft = pc.coalesce(hist.column("event_timestamp"), hist.column("created_at"))
    rows = newest([hist.column("entity_id"), ft], hist.column("created_at"))
    feats = pa.table(
        {
            "entity_id": hist.column("entity_id").take(rows),
            "ft": ft.take(rows),
            "deleted": pc.fill_null(hist.column("deleted"), False).take(rows),
            "row": pa.array(rows),
        }
    )
    labels = pa.table(
        {
            "pos": pa.array(np.arange(len(frame), dtype=np.int64)),
            "entity_id": pa.array(frame["entity_id"].tolist(), pa.string()),
            "ts": pa.array(frame["label_time"]),
        }
    )
    con = duckdb.connect()
    try:
        con.register("feats", feats)
        con.register("labels", labels)
        result = con.sql(
            """
            SELECT CASE WHEN f.deleted THEN -1 ELSE coalesce(f.row, -1) END AS row
            FROM labels l ASOF LEFT JOIN feats f ON l.entity_id = f.entity_id AND l.ts >= f.ft
            ORDER BY l.pos
            """
        ).to_arrow_table()
    finally:
        con.close()
    return result.column("row").to_numpy().astype(np.int64)


def _take(column: pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    """Values at ``rows`` (-1 gives null)."""
    return column.take(pa.array(rows, mask=rows < 0))


def _kept_columns(primary: pa.Table, rows: np.ndarray, frame: pd.DataFrame) -> pd.DataFrame:
    """The view's kept columns at the joined rows, then extra columns the labels brought."""
    import pandas as pd

    kept = [c for c in primary.column_names if c not in SYSTEM_COLUMNS]
    columns = primary.select(kept).take(pa.array(rows)).to_pandas() if kept else pd.DataFrame(index=range(len(rows)))
    for name in frame.columns:
        if name not in ("entity_id", "label", "token_index") and name not in columns.columns:
            columns[name] = frame[name].to_numpy()
    return columns


# ------------------------------------------------------------------------------- splits


def _check_split_kind(split: str) -> None:
    if split not in ("stratified", "text") and not (isinstance(split, str) and split.startswith("group:") and split != "group:"):
        raise InvalidArgumentError(f"split must be 'stratified', 'text' or 'group:COLUMN'. Got {split!r} instead.")


def _groups(split: str, ids: np.ndarray, content_hash: np.ndarray, columns: pd.DataFrame) -> np.ndarray:
    """The unit a split never cuts through: the entity, the exact text, or a column's value."""
    _check_split_kind(split)
    if split == "stratified":
        return ids
    if split == "text":
        return content_hash.astype(object)
    column = split.removeprefix("group:")
    if column not in columns.columns:
        raise SourceError(f"split {split!r}: column {column!r} not found; the columns are: {', '.join(columns.columns)}")
    return columns[column].astype(str).to_numpy(dtype=object)


def _split(y: np.ndarray, groups: np.ndarray, arguments: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Seeded folds (stratified by label, grouped) or one grouped train/test split."""
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold

    n_splits, test_size, seed = arguments["n_splits"], arguments["test_size"], arguments["seed"]
    n_groups = len(set(groups.tolist()))
    if test_size is not None and not (isinstance(test_size, (int, float)) and not isinstance(test_size, bool) and 0 < test_size < 1):
        raise InvalidArgumentError(f"test_size must be a fraction between 0 and 1. Got {test_size!r} instead.")
    if test_size is None and (not isinstance(n_splits, int) or isinstance(n_splits, bool) or not 2 <= n_splits <= n_groups):
        raise InvalidArgumentError(f"n_splits must be an int from 2 to the number of groups ({n_groups}). Got {n_splits!r} instead.")
    try:
        if test_size is not None:
            _, test_index = next(GroupShuffleSplit(1, test_size=test_size, random_state=seed).split(y, y, groups))
            test = np.zeros(len(y), bool)
            test[test_index] = True
            return None, ~test, test
        folds = np.full(len(y), -1, np.int64)
        cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            for k, (_, test_index) in enumerate(cv.split(np.zeros((len(y), 1)), y, groups)):
                folds[test_index] = k
    except ValueError as exc:
        raise SourceError(f"cannot split {len(y)} rows in {n_groups} groups: {exc}") from None
    return folds, None, None


def _content_sha256(ids: np.ndarray, y: np.ndarray, times: pd.Series | None) -> str:
    """sha256 of the ids, labels (and label times) in row order: the identity of the set."""
    stamps = times.astype(str).tolist() if times is not None else [""] * len(ids)
    text = "\n".join(f"{i}\t{label}\t{t}" for i, label, t in zip(ids.tolist(), y.tolist(), stamps))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
