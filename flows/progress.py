"""Progress callbacks for flows that run in this process (the command line's progress bar)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from featurestore.materialization.runs import ProgressFn

_HOOKS: list[ProgressFn] = []


@contextmanager
def progress_hook(fn: ProgressFn | None) -> Iterator[None]:
    """Call ``fn(rows_done, rows_total)`` after each shard of flows run in this process."""
    if fn is not None:
        _HOOKS.append(fn)
    try:
        yield
    finally:
        if fn is not None:
            _HOOKS.remove(fn)


def hooks() -> list[ProgressFn]:
    return list(_HOOKS)
