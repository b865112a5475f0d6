"""Indexes, heads and run records of a remote store, shared through its bucket.

A remote store writes these files in its local work folder first (FAISS and skops want local
files), then publishes them under the same relative path of the remote root; a reader on any
machine fetches what its work folder lacks before it reads. Two kinds of folders:

- immutable ones (``models/<name>/<version>/``, ``runs/``): files are uploaded once, a model's
  ``manifest.json`` last, and a reader downloads the files it does not have;
- replaced ones (``indexes/<view>/<encoder_id>/``): each publish uploads a new generation
  ``<folder>/<generation>/`` and then points ``<folder>/CURRENT`` at it, so a reader never mixes
  the files of two builds; the generation before the newest is kept for readers still fetching it.

File I/O goes through pyarrow's file systems: ``pyarrow.fs.FileSystem.from_uri`` reads the same
``AWS_*`` (``GOOGLE_*``, ``AZURE_*``) variables as deltalake; S3 options given in
``FEATURESTORE_STORAGE_OPTIONS`` (keys, region, endpoint) are passed on as well.
"""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from featurestore import settings
from featurestore.errors import StoreError
from featurestore.store.remote import scheme_of

CURRENT = "CURRENT"  # names the published generation of a replaced folder
LOCAL_GENERATION = ".generation"  # the generation a work folder's copy came from
MARKERS = ("manifest.json", "index.json")  # written last: their presence means the rest is there

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
        fs, inner = pafs.FileSystem.from_uri(f"s3://{path}" if scheme == "s3a" else root)
        return fs, inner
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

    def download_missing(self, relative: str, *, marker: str | None = None) -> None:
        """Bring the files under the remote ``relative`` folder that the work folder lacks. With a
        ``marker``, only folders that hold it (an upload in progress has not written it yet)."""
        import pyarrow.fs as pafs

        base = self._remote(relative)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
        except OSError as exc:
            raise self._fail("list", relative, exc) from None
        names = [info.path[len(base) + 1 :] for info in infos if info.type == pafs.FileType.File]
        if marker is not None:
            complete = {name.rpartition("/")[0] for name in names if name.rpartition("/")[2] == marker}
            names = [name for name in names if name.rpartition("/")[0] in complete]
        wanted = sorted((n for n in names if not (self.work / relative / n).exists()), key=lambda n: n.endswith(MARKERS))
        for name in wanted:
            try:
                self._get(f"{base}/{name}", self.work / relative / name)
            except OSError as exc:
                raise self._fail("read", f"{relative}/{name}", exc) from None

    # ----------------------------------------------------------------- replaced folders
    def publish_generation(self, relative: str) -> str:
        """Upload the work folder's ``relative`` folder as a new generation and make it current."""
        import pyarrow.fs as pafs

        local = self.work / relative
        generation = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:8]
        files = sorted((p for p in local.iterdir() if p.is_file() and not p.name.startswith(".")), key=lambda p: p.name in MARKERS)
        base = self._remote(relative)
        try:
            for path in files:
                self._put(path, f"{base}/{generation}/{path.name}")
            previous = self._read_text(f"{base}/{CURRENT}")
            with self.fs.open_output_stream(f"{base}/{CURRENT}") as out:
                out.write(generation.encode())
            for info in self.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True)):
                if info.type == pafs.FileType.Directory and info.base_name not in (generation, previous):
                    self.fs.delete_dir(info.path)
        except OSError as exc:
            raise self._fail("write", relative, exc) from None
        (local / LOCAL_GENERATION).write_text(generation)
        return generation

    def fetch_generation(self, relative: str) -> None:
        """Make the work folder's ``relative`` folder the current remote generation (when there is one
        and the local copy is another): downloaded beside it, then moved in, marker last."""
        base = self._remote(relative)
        local = self.work / relative
        try:
            generation = self._read_text(f"{base}/{CURRENT}")
        except OSError as exc:
            raise self._fail("read", relative, exc) from None
        marker = local / LOCAL_GENERATION
        if generation is None or (marker.is_file() and marker.read_text() == generation):
            return
        import pyarrow.fs as pafs

        incoming = local.parent / f".fetch-{local.name}-{uuid.uuid4().hex[:8]}"
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(f"{base}/{generation}", recursive=False))
            for info in infos:
                if info.type == pafs.FileType.File:
                    self._get(info.path, incoming / info.base_name)
            local.mkdir(parents=True, exist_ok=True)
            for path in sorted(incoming.iterdir(), key=lambda p: p.name in MARKERS):
                os.replace(path, local / path.name)
            marker.write_text(generation)
        except OSError as exc:
            raise self._fail("read", f"{relative}/{generation}", exc) from None
        finally:
            shutil.rmtree(incoming, ignore_errors=True)

    def read_current(self, relative: str, name: str) -> str | None:
        """The text of file ``name`` in the current generation of ``relative`` (None without one),
        read from the bucket alone: a look at ``index.json`` need not download the index."""
        base = self._remote(relative)
        try:
            generation = self._read_text(f"{base}/{CURRENT}")
            return None if generation is None else self._read_text(f"{base}/{generation}/{name}")
        except OSError as exc:
            raise self._fail("read", relative, exc) from None

    # ----------------------------------------------------------------------- file I/O
    def _put(self, path: Path, remote: str) -> None:
        import pyarrow.fs as pafs

        pafs.copy_files(str(path), remote, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=self.fs)

    def _get(self, remote: str, path: Path) -> None:
        import pyarrow.fs as pafs

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            pafs.copy_files(remote, str(partial), source_filesystem=self.fs, destination_filesystem=pafs.LocalFileSystem())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)

    def _read_text(self, remote: str) -> str | None:
        try:
            with self.fs.open_input_stream(remote) as stream:
                return stream.read().decode().strip() or None
        except FileNotFoundError:
            return None

