"""Store roots on object storage (``s3://``, ``gs://``), through deltalake's own I/O.

The feature tables live under the remote root; deltalake reads and commits them with the
storage options of its object store (``AWS_*`` or ``GOOGLE_*`` environment variables
or ``FEATURESTORE_STORAGE_OPTIONS``). Listing the catalog goes through deltalake's
``DeltaStorageHandler`` with the same options, so one set of credentials serves both.
"""

from __future__ import annotations

import re
from typing import Any

from featurestore.errors import StoreError

# Object stores that both deltalake (the tables) and pyarrow (indexes, heads, run records) open
# from a URL (file:// roots are local folders). Azure is left out: pyarrow cannot open az:// URLs.
REMOTE_SCHEMES = ("s3", "s3a", "gs")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CODE = re.compile(r"<Code>([^<]+)</Code>")
_BACKTRACE = re.compile(r"^\s*\d+: ", re.MULTILINE)  # where a Rust backtrace starts ("   0: <unknown>")


def scheme_of(uri: str) -> str:
    """The URL scheme of ``uri`` (lower case), or '' for a plain path."""
    return uri.split("://", 1)[0].lower() if "://" in uri else ""


def is_remote(uri: str) -> bool:
    return scheme_of(uri) not in ("", "file")


def normalized(uri: str) -> str:
    """``uri`` with a lower-case scheme and no trailing slash (how deltalake spells table URLs)."""
    scheme, _, rest = uri.partition("://")
    return f"{scheme.lower()}://{rest}".rstrip("/")


def check_scheme(uri: str) -> None:
    scheme = scheme_of(uri)
    if scheme not in REMOTE_SCHEMES:
        raise StoreError(
            f"store {uri!r}: {scheme}:// is not a storage the store can use; "
            f"give a local folder or one of {', '.join(s + '://' for s in REMOTE_SCHEMES)}"
        )


def describe(exc: BaseException) -> str:
    """One line out of an object store's nested error (the service's error code when it sent one)."""
    text = _ANSI.sub("", str(exc))
    trace = _BACKTRACE.search(text)
    text = text[: trace.start()] if trace else text  # deltalake appends its stack: not the message
    code = _CODE.search(text)
    if code:
        return code.group(1)
    lines = [line.strip(" ↳") for line in text.splitlines() if line.strip(" ↳")]
    return lines[-1] if lines else type(exc).__name__


class RemoteFolder:
    """The folders under a remote store root, listed with deltalake's storage handler."""

    def __init__(self, root: str, storage_options: dict[str, str] | None) -> None:
        self.root = root
        self.storage_options = storage_options
        self._fs: Any = None

    @property
    def fs(self) -> Any:
        if self._fs is None:
            import pyarrow.fs as pafs
            from deltalake.fs import DeltaStorageHandler

            self._fs = pafs.PyFileSystem(DeltaStorageHandler(self.root, self.storage_options))
        return self._fs

    def subfolders(self, relative: str) -> list[str]:
        """The names of the folders directly under ``relative`` (none when it does not exist)."""
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(relative, recursive=False, allow_not_found=True))
        except OSError as exc:
            raise StoreError(f"cannot list {self.root}/{relative}: {describe(exc)}; check the storage options") from None
        return sorted(info.base_name for info in infos if info.type == pafs.FileType.Directory)

    def is_folder(self, relative: str) -> bool:
        import pyarrow.fs as pafs

        try:
            return self.fs.get_file_info(relative).type == pafs.FileType.Directory
        except OSError as exc:
            raise StoreError(f"cannot read {self.root}/{relative}: {describe(exc)}; check the storage options") from None

    def check_reachable(self) -> None:
        """List the root once, so a missing bucket or bad credentials fail before any work starts."""
        import pyarrow.fs as pafs

        try:
            self.fs.get_file_info(pafs.FileSelector("", recursive=False, allow_not_found=True))
        except OSError as exc:
            raise StoreError(
                f"cannot reach the store at {self.root}: {describe(exc)}; check the bucket and the storage options "
                "(AWS_*/GOOGLE_* variables or FEATURESTORE_STORAGE_OPTIONS)"
            ) from None
