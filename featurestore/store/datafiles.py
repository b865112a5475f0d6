"""The Parquet data files a Delta table version names: which they are, and what reading them raises.

The Delta log is a file of the store: every path it names must lie inside the table's folder,
and a file that is missing, damaged or foreign reads as one :class:`StoreError` naming it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

from featurestore.errors import StoreError
from featurestore.store.remote import describe

RESTORE = "Restore the table from a copy, or remove it and materialize the view again"


def local_files(dt: Any, uri: str) -> list[str]:
    """The data files of a local table version as paths (the log percent-encodes spaces and non-ASCII).

    Each must lie in the table's folder once links and ``..`` are resolved: the log is a file of
    the store, and a log written elsewhere could name ``../../x`` (deltalake encodes it as
    ``%2E%2E``, which decodes back) or a link to any file on the machine.
    """
    root = os.path.realpath(unquote(dt.table_uri.removeprefix("file://"))) + os.sep
    paths = [unquote(path.removeprefix("file://")) for path in dt.file_uris()]
    for path in paths:
        if not os.path.realpath(path).startswith(root):
            raise StoreError(outside(uri, path))
    return paths


def outside(uri: str, path: str) -> str:
    """The message for a data file the log of the table at ``uri`` names outside the table."""
    return f"{uri}: its Delta log names the data file {path}, which lies outside the table; it is not read. {RESTORE}"


@contextmanager
def reading(path: str) -> Iterator[None]:
    """What a missing, damaged or foreign data file raises, as one StoreError naming the file."""
    try:
        yield
    except (OSError, ValueError, KeyError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise StoreError(f"the data file {path} cannot be read as this table's Parquet ({describe(exc)}). {RESTORE}") from None
