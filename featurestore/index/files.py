"""An index folder's files: the names a save writes, and the checks every loaded folder passes.

A folder under ``<store>/indexes/`` may come from someone else: ``index.json`` may name only
plain files of this index's kinds inside the folder (no path out of it, no link), and an index
file must start as the ones built here do before FAISS, C++ code, parses the rest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from featurestore.errors import StoreError

__all__ = ["FAISS_HEADERS", "FILE_NAMES", "INDEX_FILES", "INFO_FILE", "TEMPORARY", "check_header", "checked_files", "file_size", "named_files"]

INDEX_FILES = re.compile(r"^(index(-\w+)?\.faiss|ids(-\w+)?\.parquet|delta(-\w+)?\.parquet)$")
# What index.json may name, by kind: plain names in the index folder (``../x`` would read outside it).
FILE_NAMES = {"index": re.compile(r"^index(-\w+)?\.faiss$"), "ids": re.compile(r"^ids(-\w+)?\.parquet$"), "delta": re.compile(r"^delta(-\w+)?\.parquet$")}
# The first four bytes of the index files built here: IndexIDMap2 (flat and HNSW), IndexIVFFlat, IndexRefine
# (IVF-PQ). Checked before FAISS, C++ code, parses the rest of a file that may come from anywhere.
FAISS_HEADERS = (b"IxM2", b"IwFl", b"IxRF")
TEMPORARY = re.compile(r"^\..+\.tmp$")  # what a save writes before renaming it into place

INFO_FILE = "index.json"  # names the generation's files; written last, it commits a save


def checked_files(folder: Path, files: Any, rebuild: str) -> dict[str, str]:
    """``index.json``'s files, each a plain file named as this module names them (never a path
    out of the folder, never a link), with the index and id map among them."""
    if not files:
        raise StoreError(f"{folder / INFO_FILE} lists no files of this index (its \"files\" entry is missing or empty); {rebuild}")
    named = isinstance(files, dict) and {"index", "ids"} <= set(files)
    bad = [f"{k}: {v!r}" for k, v in files.items() if k not in FILE_NAMES or not isinstance(v, str) or not FILE_NAMES[k].match(v)] if named else []
    if not named or bad:
        listed = ", ".join(bad) if bad else repr(files)
        raise StoreError(f"{folder / INFO_FILE} names files that are not this index's ({listed}); {rebuild}")
    for name in files.values():
        if (folder / name).is_symlink():
            raise StoreError(f"the index file {folder / name} is a link; an index folder holds plain files only, {rebuild}")
    return files


def check_header(path: Path, rebuild: str) -> None:
    """Refuse a file that is missing or does not start as the index files built here do."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise StoreError(f"the index file {path} cannot be read ({exc.strerror or exc}); {rebuild}") from None
    if head not in FAISS_HEADERS:
        raise StoreError(f"the index file {path} is not a FAISS index built here (it starts with {head!r}); {rebuild}")


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def named_files(folder: Path) -> set[str]:
    """The files the ``index.json`` in ``folder`` names (none when it is missing or unreadable)."""
    try:
        info = json.loads((folder / INFO_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return set()
    files = info.get("files") if isinstance(info, dict) else None
    return {name for name in files.values() if isinstance(name, str)} if isinstance(files, dict) else set()
