"""One writer per table: ``flock`` on ``<store>/locks/<view>/<encoder_id>`` (shared on ``locks/<view>``).

Delta commits are atomic, but two runs that plan the same diff at once would both encode it
and both commit it (duplicates), and two index writers would interleave their files. Every
writer of a view (refresh, materialize, index build and update, from the command line or
Python) therefore takes the lock of the table it writes first (a refresh: the whole view). A run
that finds it taken stops at once with a message naming the holder (the next scheduled run picks
up whatever it would have written), so runs never pile up behind a slow one, unless it was told
to wait (``--wait SECONDS``): then it queues, saying on stderr whom it waits for.

The lock is a *folder*, not a file: an idle lock leaves no file in the store, so a run that
fails leaves the store's files exactly as they were. While held, ``holder`` inside it says who
holds it. The kernel drops a ``flock`` when its process dies, so a killed run never leaves a
stale lock; and while a run holds the lock no other run of the view is live, so what it finds
of earlier runs (staging, an index save's temporary files) is a killed run's and is removed
(:func:`featurestore.materialization.planning.clear_dead_staging`, ``VectorIndex.save``).
Local stores only (``flock`` on a folder is not supported over NFS).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from featurestore.errors import ViewBusyError
from featurestore.store import Store
from featurestore.store.schema import check_view_name

__all__ = ["cache_lock", "view_lock"]

_HELD = threading.local()  # the lock folders this thread holds: a nested take is a no-op


@contextmanager
def view_lock(view: str, purpose: str, *, store: Store | str | None = None, encoder_id: str | None = None) -> Iterator[None]:
    """Hold the write lock of ``view``'s table of ``encoder_id`` (or of the whole view when None) for the block.

    A table lock is a shared ``flock`` on ``locks/<view>`` and an exclusive one on
    ``locks/<view>/<encoder_id>``: writers of two tables of a view run side by side, two writers of
    one table exclude each other, and a whole-view lock (a refresh) excludes them all. A lock
    another run holds raises :class:`ViewBusyError` at once, or after waiting up to
    ``settings.lock_wait()`` seconds (``--wait``; ``FEATURESTORE_LOCK_WAIT``), saying on stderr
    every few seconds whom it waits for and for how long. Re-entrant within a thread (a refresh
    holds the view while its materialize takes a table of it). ``purpose`` (``refresh``,
    ``materialize``, ``index build`` ...) is shown to a run that finds the lock taken.
    """
    store = Store.of(store)
    folder = store.lock_dir(view)
    table = folder / check_view_name(encoder_id) if encoder_id is not None else None
    held: set[Path] = _HELD.__dict__.setdefault("folders", set())
    if folder in held or (table is not None and table in held):
        yield
        return
    created = store.ensure_writable()
    what = view if table is None else f"{view}/{encoder_id}"
    fds: list[int] = []
    taken: list[Path] = []
    try:
        (table or folder).mkdir(parents=True, exist_ok=True)
        fds.append(os.open(folder, os.O_RDONLY))
        _take(fds[-1], fcntl.LOCK_EX if table is None else fcntl.LOCK_SH, folder, view, view)  # a whole-view holder is the view's
        if table is not None:
            fds.append(os.open(table, os.O_RDONLY))
            _take(fds[-1], fcntl.LOCK_EX, table, what, view)
        mine = table or folder
        try:
            (mine / "holder").write_text(f"{purpose}, pid {os.getpid()}, since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
            held.add(mine)
            taken.append(mine)
            yield
        finally:
            held.discard(mine)
            if taken:
                (mine / "holder").unlink(missing_ok=True)
    finally:
        for fd in fds:
            os.close(fd)
        _remove_if_empty(created)


WAIT_REPORT_S = 5.0  # a waiting writer says so at once, then every this many seconds


def _take(fd: int, mode: int, folder: Path, what: str, view: str) -> None:
    """``flock`` ``fd``; when another run holds it, wait up to ``settings.lock_wait()`` seconds, saying so on stderr."""
    from featurestore import settings

    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        wait = settings.lock_wait()
    subject = f"view {view}" + (f" ({what.partition('/')[2]})" if "/" in what else "")
    if wait <= 0:
        raise ViewBusyError(f"{subject} is being written by another run ({_holder_of(folder)}); "
                            "try again when it finishes, or pass `wait=SECONDS` to queue behind it") from None
    started = time.monotonic()
    said = -WAIT_REPORT_S
    while True:
        waited = time.monotonic() - started
        if waited - said >= WAIT_REPORT_S:
            sys.stderr.write(f"featurestore: waiting for the lock on {what} held by {_holder_of(folder)} ({waited:.0f} s)\n")
            sys.stderr.flush()
            said = waited
        if waited >= wait:
            raise ViewBusyError(f"{subject} is still being written by another run ({_holder_of(folder)}) after {wait:g} s of waiting; "
                                "try again when it finishes, or pass a longer `wait`")
        time.sleep(0.2)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            continue


def _holder_of(folder: Path) -> str:
    """Who holds the lock of ``folder``: its own holder, else (a whole-view lock) that of a table in it."""
    found = _holder(folder)
    if found != "starting":
        return found
    tables = [_holder(p) for p in sorted(folder.iterdir()) if p.is_dir()] if folder.is_dir() else []
    return next((h for h in tables if h != "starting"), "starting")


def _holder(folder: Path) -> str:
    try:
        return (folder / "holder").read_text().strip() or "starting"
    except OSError:
        return "starting"


def _remove_if_empty(created: Path | None) -> None:
    """Remove the store root this lock created when the run wrote no file into it (it failed early)."""
    if created is not None and not any(p.is_file() for p in created.rglob("*")):
        shutil.rmtree(created, ignore_errors=True)


@contextmanager
def cache_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the file ``path`` for the block, waiting for another process
    that holds it (one writer of a cache entry at a time; the others then use what it wrote)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
