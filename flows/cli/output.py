"""How commands print: JSON on stdout for machines, rich tables for people, errors as one line."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Iterator
from contextlib import contextmanager


BACKEND_HELP = (
    "What runs the minilm/st: sentence encoders and efficientnet-lite0: auto (default: ONNX Runtime on CPU when "
    "installed and its checked export is cached or can be made, else torch), torch or onnx. Sets $FEATURESTORE_ENCODER_BACKEND."
)


def use_backend(backend: str | None) -> None:
    """Check ``--backend`` and make it the process's (and its workers') ``FEATURESTORE_ENCODER_BACKEND``."""
    if backend is None:
        return
    from featurestore import settings

    os.environ["FEATURESTORE_ENCODER_BACKEND"] = settings.encoder_backend(backend.strip().lower())


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def console():
    from rich.console import Console

    # a log file or pipe gets wide tables (rich would assume 80 columns and squeeze them)
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160)


def print_table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*["" if row.get(c) is None else str(row.get(c)) for c in columns])
    console().print(table)


@contextmanager
def progress_bar(label: str, *, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr when it is a terminal; yields the update function."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True
    ) as progress:
        task_id = progress.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total)

        yield update
