"""Progress callbacks: the one type every long call takes, and the counter that feeds one.

A ``progress`` argument is called as ``progress(done, total)``: rows after each shard of a
materialize, steps (cross-validation folds, fits, views) of a training or a refresh.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["ProgressFn", "Steps"]

ProgressFn = Callable[[int, int], None]


class Steps:
    """Counts finished steps (cross-validation folds, fits, a refresh's views) for a ``progress`` callback."""

    def __init__(self, progress: ProgressFn | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def tick(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(min(self.done, self.total), self.total)
