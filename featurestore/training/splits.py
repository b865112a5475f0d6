"""Deterministic splits of a training set: the groups a split never cuts through (entity,
exact text, or a column's value) and seeded grouped folds or one grouped train/test split."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from featurestore.errors import InvalidArgumentError, SourceError

if TYPE_CHECKING:
    import pandas as pd


def check_split_kind(split: str) -> None:
    if split not in ("stratified", "text") and not (isinstance(split, str) and split.startswith("group:") and split != "group:"):
        raise InvalidArgumentError(f"split must be 'stratified', 'text' or 'group:COLUMN'. Got {split!r} instead.")


def split_groups(split: str, ids: np.ndarray, content_hash: np.ndarray, columns: pd.DataFrame) -> np.ndarray:
    """The unit a split never cuts through: the entity, the exact text, or a column's value."""
    check_split_kind(split)
    if split == "stratified":
        return ids
    if split == "text":
        return content_hash.astype(object)
    column = split.removeprefix("group:")
    if column not in columns.columns:
        raise SourceError(f"split {split!r}: column {column!r} not found; the columns are: {', '.join(columns.columns)}")
    return columns[column].astype(str).to_numpy(dtype=object)


def split_rows(y: np.ndarray, groups: np.ndarray, arguments: dict[str, Any]) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
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
