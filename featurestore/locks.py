"""One writer per view: a non-blocking ``flock`` on ``<store>/locks/<view>``.

Delta commits are atomic, but two runs that plan the same diff at once would both encode it
and both commit it (duplicates), and two index writers would interleave their files. Every
writer of a view (refresh, materialize, index build and update, from the command line or
Python) therefore takes this lock first. A run that finds it taken does
not wait: it stops at once with a message naming the holder (the next scheduled run picks up
whatever it would have written), so runs never pile up behind a slow one.

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
import threading
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
def view_lock(store: Store | str | None, view: str, purpose: str) -> Iterator[None]:
    """Hold the write lock of ``view`` for the block; :class:`ViewBusyError` when another run holds it.

    Re-entrant within a thread (a refresh holds it while its materialize takes it again).
    ``purpose`` (``refresh``, ``materialize``, ``index build`` ...) is shown to a run that finds the lock taken.
    """
    store = store if isinstance(store, Store) else Store(store)
    folder = store.path / "locks" / check_view_name(view)
    held: set[Path] = _HELD.__dict__.setdefault("folders", set())
    if folder in held:
        yield
        return
    created = store.ensure_writable()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ViewBusyError(f"view {view} is being written by another run ({_holder(folder)}); try again when it finishes") from None
        try:
            (folder / "holder").write_text(f"{purpose}, pid {os.getpid()}, since {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")
            held.add(folder)
            yield
        finally:
            held.discard(folder)
            (folder / "holder").unlink(missing_ok=True)
    finally:
        os.close(fd)
        _remove_if_empty(created)


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
