"""Labels of a training set: a kept column of the view, or a file or DataFrame of
``(entity_id, label[, event_timestamp])``, read, renamed and checked (one class per row,
whole numbers, labels without a feature row)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from featurestore.errors import SourceError
from featurestore.sources.content import file_sha256
from featurestore.store.schema import SYSTEM_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

LABEL_FORMATS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}


def read_label_frame(arguments: dict[str, Any], labels: Any, primary: pa.Table, live: pa.Table) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(frame, info)``: a frame of ``entity_id, label[, label_time][, token_index]`` plus extras."""
    import pandas as pd

    label_col = arguments["label_col"]
    if isinstance(labels, pd.DataFrame):
        return _label_frame(labels, arguments, "the labels DataFrame"), {"source": "frame", "label_col": label_col}
    path = labels_file(labels)
    if path is None:
        return _column_labels(str(labels), arguments["view"], primary, live)
    if not path.is_file():
        raise SourceError(f"labels file not found: {path}")
    digest = file_sha256(path)
    frame = _label_frame(_read_labels(path, arguments["id_col"]), arguments, str(path))
    return frame, {"source": "file", "path": str(path.absolute()), "sha256": digest, "label_col": label_col}


def labels_file(labels: str | os.PathLike[str]) -> Path | None:
    """The labels file ``labels`` names (a label file's suffix, or an existing path), None for a column name."""
    path = Path(labels)
    return path if path.suffix.lower() in LABEL_FORMATS or path.exists() else None


def check_label_column(column: str, view: str, kept: list[str]) -> None:
    if column not in kept:
        raise SourceError(
            f"label column {column!r} is not a kept column of view {view!r}; its columns are: {', '.join(kept) or 'none'} "
            "(pass labels=FILE for labels kept elsewhere)"
        )


def _column_labels(column: str, view: str, primary: pa.Table, live: pa.Table) -> tuple[pd.DataFrame, dict[str, Any]]:
    kept = [c for c in primary.column_names if c not in SYSTEM_COLUMNS]
    check_label_column(column, view, kept)
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


def check_label_values(y: np.ndarray, label_col: str) -> None:
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


def check_missing(view: str, frame: pd.DataFrame, found: np.ndarray, missing: int, strict: bool, info: dict[str, Any]) -> list[str]:
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
