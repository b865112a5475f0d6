"""Progress callbacks for flows that run in this process (the command line's progress bar)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from featurestore.progress import ProgressFn

_HOOKS: list[ProgressFn] = []


@contextmanager
def progress_hook(fn: ProgressFn | None) -> Iterator[None]:
    """Call ``fn(done, total)`` as flows run in this process make progress: rows after each shard
    of a materialize flow, steps (cross-validation folds, fits) of a train flow."""
    if fn is not None:
        _HOOKS.append(fn)
    try:
        yield
    finally:
        if fn is not None:
            _HOOKS.remove(fn)


def hooks() -> list[ProgressFn]:
    return list(_HOOKS)


def call_hooks(done: int, total: int) -> None:
    """Tell every hook installed by :func:`progress_hook` that ``done`` of ``total`` are done."""
    for fn in hooks():
        fn(done, total)
