"""Indexes, heads and run records of a remote store, shared through its bucket.

A remote store writes these files in its local work folder first (FAISS and skops want local
files), then publishes them under the same relative path of the remote root; a reader on any
machine fetches what its work folder lacks before it reads. Two kinds of folders:

- immutable ones (``models/<name>/<version>/``, ``runs/``): files are uploaded once, a model's
  ``manifest.json`` last, and a reader downloads the files it does not have;
- replaced ones (``indexes/<view>/<encoder_id>/``): each publish uploads a new generation
  ``<folder>/<generation>/`` and then points ``<folder>/CURRENT`` at it; a reader downloads a
  whole generation beside its copy and swaps the folders, so it never mixes two builds. The
  generation before the newest is kept for readers still fetching it.

File I/O goes through pyarrow's file systems: ``pyarrow.fs.FileSystem.from_uri`` reads the same
``AWS_*`` (``GOOGLE_*``) variables as deltalake; S3 options given in
``FEATURESTORE_STORAGE_OPTIONS`` (keys, session token, region, endpoint) are passed on as well,
the others (timeouts, retries) reach the tables only.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import uuid
from collections.abc import Collection
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from featurestore import settings
from featurestore.errors import StoreError
from featurestore.store.remote import scheme_of

CURRENT = "CURRENT"  # names the published generation of a replaced folder
LOCAL_GENERATION = ".generation"  # the generation a work folder's copy came from
MARKERS = ("manifest.json", "index.json")  # written last: their presence means the rest is there
TOKEN_NAMED = re.compile(r"^[a-z]+-[0-9a-f]{12}\.\w+$")  # index-<token>.faiss ...: written once, never changed
STAMP = "%Y%m%dT%H%M%S%fZ"  # generation names start with their UTC publish time
STALE_GENERATION = timedelta(minutes=15)  # generations older than the previous one go after this
GENERATION = re.compile(r"^\d{8}T\d{12}Z-[0-9a-f]{8}$")  # what publish_generation names them: a CURRENT naming more is refused

# deltalake's S3 option names (lower case) -> pyarrow.fs.S3FileSystem's
_S3_OPTIONS = {
    "aws_access_key_id": "access_key",
    "access_key_id": "access_key",
    "aws_secret_access_key": "secret_key",
    "secret_access_key": "secret_key",
    "aws_session_token": "session_token",
    "session_token": "session_token",
    "aws_region": "region",
    "region": "region",
    "aws_endpoint_url": "endpoint_override",
    "aws_endpoint": "endpoint_override",
    "endpoint_url": "endpoint_override",
    "endpoint": "endpoint_override",
}


def _filesystem(root: str, options: dict[str, str] | None) -> tuple[Any, str]:
    """A pyarrow file system for ``root`` and the root's path within it."""
    import pyarrow.fs as pafs

    scheme = scheme_of(root)
    path = root.split("://", 1)[1]
    s3 = {_S3_OPTIONS[k.lower()]: v for k, v in (options or {}).items() if k.lower() in _S3_OPTIONS}
    try:
        if scheme in ("s3", "s3a") and s3:
            endpoint = s3.pop("endpoint_override", None) or settings.aws_endpoint_url()
            if endpoint:
                scheme_name, _, host = endpoint.rpartition("://")
                s3.update(endpoint_override=host, scheme=scheme_name or "https")
            return pafs.S3FileSystem(**s3), path
        bucket, _, prefix = path.partition("/")  # the bucket alone: a prefix may hold characters a URI cannot
        fs, inner = pafs.FileSystem.from_uri(f"{'s3' if scheme == 's3a' else scheme}://{bucket}")
        return fs, f"{inner.rstrip('/')}/{prefix}".rstrip("/")
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot open {root} for indexes and heads: {exc}") from None


class Artifacts:
    """The remote copies of a remote store's work-folder files."""

    def __init__(self, root: str, options: dict[str, str] | None, work: Path) -> None:
        self.root = root
        self.options = options
        self.work = work
        self._fs: Any = None
        self._base = ""

    @property
    def fs(self) -> Any:
        if self._fs is None:
            self._fs, self._base = _filesystem(self.root, self.options)
        return self._fs

    def _remote(self, relative: str) -> str:
        self.fs  # noqa: B018 - sets _base
        return f"{self._base.rstrip('/')}/{relative}" if relative else self._base.rstrip("/")

    def _fail(self, action: str, relative: str, exc: BaseException) -> StoreError:
        return StoreError(f"cannot {action} {self.root}/{relative}: {exc}; check the bucket and the storage options")

    # ----------------------------------------------------------------- immutable folders
    def upload(self, relative: str) -> None:
        """Copy the work folder's ``relative`` (a file or a folder) to the remote root, markers last."""
        local = self.work / relative
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.name in MARKERS)
        try:
            for path in files:
                self._put(path, self._remote(path.relative_to(self.work).as_posix()))
        except OSError as exc:
            raise self._fail("write", relative, exc) from None

    def download_missing(
        self,
        relative: str,
        *,
        marker: str | None = None,
        names: Collection[str] | None = None,
        pattern: str | None = None,
        newest: int | None = None,
    ) -> None:
        """Bring the files under the remote ``relative`` folder that the work folder lacks.

        ``marker``: only from folders that hold it (an upload in progress has not written it
        yet); ``names``: only files so named (a model's manifest to list it, not its head);
        ``pattern``: only paths matching it (fnmatch); ``newest``: only the last so many of
        those in name order (run records are named by time).
        """
        import pyarrow.fs as pafs

        base = self._remote(relative)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise self._fail("list", relative, exc) from None
        found = sorted(info.path[len(base) + 1 :] for info in infos if info.type == pafs.FileType.File)
        for name in found:  # an object key is any string: "a/../../x" would be written outside the work folder
            if any(part in ("", ".", "..") for part in name.split("/")):
                raise StoreError(f"{self.root}/{relative}/{name}: an object name that leads out of its folder; it is not fetched. "
                                 "The store never writes such names: remove the object from the bucket")
        if marker is not None:
            complete = {name.rpartition("/")[0] for name in found if name.rpartition("/")[2] == marker}
            found = [name for name in found if name.rpartition("/")[0] in complete]
        if names is not None:
            found = [name for name in found if name.rpartition("/")[2] in names]
        if pattern is not None:
            found = [name for name in found if fnmatch.fnmatchcase(name, pattern)]
        if newest is not None:
            found = found[-newest:]
        wanted = sorted((n for n in found if not (self.work / relative / n).exists()), key=lambda n: n.endswith(MARKERS))
        for name in wanted:
            try:
                self._get(f"{base}/{name}", self.work / relative / name)
            except OSError as exc:
                raise self._fail("read", f"{relative}/{name}", exc) from None

    # ----------------------------------------------------------------- replaced folders
    def publish_generation(self, relative: str, names: Collection[str] | None = None) -> str:
        """Upload the work folder's ``relative`` folder as a new generation and make it current.

        A file the previous generation holds under the same name and size (files named with a
        token are written once: an index file an update did not touch) is copied inside the
        bucket instead of uploaded. Older generations are deleted once a newer one is current
        and they are 15 minutes old:
        the previous one stays for readers still fetching it, and a concurrent publish still
        uploading is never deleted under its writer.
        """
        import pyarrow.fs as pafs

        local = self.work / relative
        now = datetime.now(timezone.utc)
        generation = now.strftime(STAMP) + "-" + uuid.uuid4().hex[:8]
        files = [p for p in local.iterdir() if p.is_file() and not p.name.startswith(".") and (names is None or p.name in names)]
        files.sort(key=lambda p: p.name in MARKERS)
        base = self._remote(relative)
        try:
            previous = self._read_text(f"{base}/{CURRENT}")
            previous = previous if previous and GENERATION.match(previous) else None  # a foreign CURRENT is replaced, not followed
            for path in files:
                target = f"{base}/{generation}/{path.name}"
                if previous and self._unchanged(path, f"{base}/{previous}/{path.name}"):
                    self.fs.copy_file(f"{base}/{previous}/{path.name}", target)  # a copy inside the bucket: no upload
                else:
                    self._put(path, target)
            with self.fs.open_output_stream(f"{base}/{CURRENT}") as out:
                out.write(generation.encode())
            for info in self.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True)):
                if info.type == pafs.FileType.Directory and previous and info.base_name < previous and _age(info.base_name, now) > STALE_GENERATION:
                    self.fs.delete_dir(info.path)
        except OSError as exc:
            raise self._fail("write", relative, exc) from None
        (local / LOCAL_GENERATION).write_text(generation)
        return generation

    def fetch_generation(self, relative: str) -> None:
        """Make the work folder's ``relative`` folder the current remote generation (when there is
        one and the local copy is another): downloaded whole beside it, then swapped in."""
        import pyarrow.fs as pafs

        base = self._remote(relative)
        local = self.work / relative
        marker = local / LOCAL_GENERATION
        incoming = local.parent / f".fetch-{local.name}-{uuid.uuid4().hex[:8]}"
        try:
            generation = self._current(base, relative)
            if generation is None or (marker.is_file() and marker.read_text() == generation):
                return
            infos = self.fs.get_file_info(pafs.FileSelector(f"{base}/{generation}", recursive=False, allow_not_found=True))
            files = [info for info in infos if info.type == pafs.FileType.File]
            if not any(info.base_name in MARKERS for info in files):
                raise OSError(f"generation {generation} is incomplete (no {' or '.join(MARKERS)})")
            for info in files:
                mine = local / info.base_name
                if TOKEN_NAMED.match(info.base_name) and mine.is_file() and mine.stat().st_size == info.size:
                    incoming.mkdir(parents=True, exist_ok=True)
                    os.link(mine, incoming / info.base_name)  # the same write-once file: no download
                else:
                    self._get(info.path, incoming / info.base_name)
            (incoming / LOCAL_GENERATION).write_text(generation)
            _swap(incoming, local)
        except OSError as exc:
            raise self._fail("read", relative, exc) from None
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def read_current(self, relative: str, name: str) -> str | None:
        """The text of file ``name`` in the current generation of ``relative`` (None without one),
        read from the bucket alone: a look at ``index.json`` need not download the index."""
        base = self._remote(relative)
        try:
            generation = self._current(base, relative)
            return None if generation is None else self._read_text(f"{base}/{generation}/{name}")
        except OSError as exc:
            raise self._fail("read", relative, exc) from None

    def _current(self, base: str, relative: str) -> str | None:
        """The generation ``CURRENT`` names, refused unless it is a name publish_generation gives
        (it becomes part of the paths read: ``../x`` would read another folder)."""
        generation = self._read_text(f"{base}/{CURRENT}")
        if generation is not None and not GENERATION.match(generation):
            raise StoreError(f"{self.root}/{relative}/{CURRENT} names {generation[:80]!r}, which is not a generation this store writes; "
                             "publish the folder again (for an index: `featurestore index build`)")
        return generation

    # ----------------------------------------------------------------------- file I/O
    def _put(self, path: Path, remote: str) -> None:
        import pyarrow.fs as pafs

        pafs.copy_files(str(path), remote, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)

    def _get(self, remote: str, path: Path) -> None:
        """Download to a partial file outside the target folder, then move it in: a kill leaves
        nothing in the folder (a model folder with a stray file would fail verification)."""
        import pyarrow.fs as pafs

        partial = self.work / ".incoming" / f"{uuid.uuid4().hex}.part"
        partial.parent.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            pafs.copy_files(remote, str(partial), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def _unchanged(self, path: Path, remote: str) -> bool:
        """Whether ``remote`` is ``path`` already: a write-once (token-named) file of the same size."""
        import pyarrow.fs as pafs

        if path.name in MARKERS or not TOKEN_NAMED.match(path.name):
            return False
        info = self.fs.get_file_info(remote)
        return info.type == pafs.FileType.File and info.size == path.stat().st_size

    def _read_text(self, remote: str) -> str | None:
        try:
            with self.fs.open_input_stream(remote) as stream:
                return stream.read().decode(errors="replace").strip() or None
        except FileNotFoundError:
            return None


def _age(generation: str, now: datetime) -> timedelta:
    """How long ago a generation was published, from its name (never stale when it has no stamp)."""
    try:
        return now - datetime.strptime(generation[: len("20260101T000000000000Z")], STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        return timedelta(0)


def _swap(incoming: Path, local: Path) -> None:
    """Put folder ``incoming`` where ``local`` is, the old one moved aside first and then deleted."""
    old = local.parent / f".old-{local.name}-{uuid.uuid4().hex[:8]}"
    local.parent.mkdir(parents=True, exist_ok=True)
    if local.exists():
        os.replace(local, old)
    os.replace(incoming, local)
    shutil.rmtree(old, ignore_errors=True)
