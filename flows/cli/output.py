"""How commands print: JSON on stdout for machines, rich tables for people, errors as one line.

stdout carries the result only (a rich table or line, or with ``--json`` one JSON object or
array); progress goes to stderr (a bar on a terminal, a line every few seconds elsewhere) with
or without ``--json``, and ``--quiet`` silences it. Errors and warnings are never silenced.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, Callable, Iterator
from contextlib import contextmanager

import typer

QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress on stderr (errors and warnings still show).")
_QUIET = [False]
PROGRESS_EVERY_S = 5.0  # a progress line on a stderr that is not a terminal (a log, a pipe) at most this often

# The columns a user types back (names and ids): never cut, never wrapped in a table.
NAME_COLUMNS = frozenset({"view", "encoder_id", "encoder", "name", "entity_id", "id", "model", "path", "flow_run", "flow_run_id"})


WaitOpt = typer.Option(None, "--wait", help="Seconds to wait for the table's lock when another run holds it, "
                       "saying on stderr whom it waits for (default 0: stop at once). Sets $FEATURESTORE_LOCK_WAIT.")


def use_wait(wait: float | None) -> None:
    """Make ``--wait`` the process's ``FEATURESTORE_LOCK_WAIT`` (checked there, when a lock is taken)."""
    if wait is not None:
        from featurestore import settings

        os.environ["FEATURESTORE_LOCK_WAIT"] = str(wait)
        settings.lock_wait()  # a bad value is a one-line error now, not only when a lock is taken


def set_quiet(quiet: bool) -> None:
    """The command's ``--quiet``: progress lines and bars off for the rest of the process."""
    _QUIET[0] = bool(quiet)


def say(message: str) -> None:
    """One progress line on stderr (``featurestore: ...``), unless ``--quiet``."""
    if not _QUIET[0]:
        sys.stderr.write(f"featurestore: {message}\n")
        sys.stderr.flush()


BACKEND_HELP = (
    "What runs the minilm/st: encoders (sentence and token vectors) and efficientnet-lite0 (minilm-int8: ONNX Runtime only): auto (default: ONNX Runtime on CPU when "
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
    """A rich table on stdout; names and ids (:data:`NAME_COLUMNS`) are shown whole, other cells wrap."""
    from rich.table import Table

    cells = [["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    table = Table(title=title)
    for i, col in enumerate(columns):
        if col in NAME_COLUMNS:
            widest = max([len(col), *(len(r[i]) for r in cells)])
            table.add_column(col, no_wrap=True, overflow="fold", min_width=widest)
        else:
            table.add_column(col, overflow="fold")
    for row in cells:
        table.add_row(*row)
    console().print(table)


@contextmanager
def progress_bar(label: str, *, enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """Progress on stderr, yielding the update function ``(done, total)``: a rich bar on a terminal,
    else a line every :data:`PROGRESS_EVERY_S` seconds and one at the end; None under ``--quiet``."""
    if not enabled or _QUIET[0]:
        yield None
        return
    if not sys.stderr.isatty():
        last = [0.0, -1]

        def line(done: int, total: int) -> None:
            now = time.monotonic()
            if done != last[1] and (now - last[0] >= PROGRESS_EVERY_S or (total and done >= total)):
                last[0], last[1] = now, done
                say(f"{label}: {done}/{total} rows")

        yield line
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
