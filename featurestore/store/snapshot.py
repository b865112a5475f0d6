"""Read snapshots: the latest state of a table version as memory-mappable files.

Reading a Delta version means decoding Parquet and resolving the newest row per entity; the
result for a version never changes, so the first read of a version writes it once under
``<store>/_cache/<view>/<encoder_id>/v<version>-f<format>/`` and later reads map it without a
copy: ``rows.arrow`` (entity_id, content_hash and the kept columns, Arrow IPC) and
``vectors.npy`` (one contiguous ``(n, dim) float32`` block, row-aligned with it, so numpy views
it in place however many batches wrote it). Both are written batch by batch into a temporary
folder that is renamed into place last: memory holds one batch, and a crash mid-write leaves
only a temporary folder that no read uses. Older versions' folders are removed when a newer
one is written. The Delta table stays the source of truth: a missing or unreadable snapshot
only costs the slower read.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from featurestore.store.codec import embeddings_to_numpy
from featurestore.store.datafiles import reading
from featurestore.store.latest import latest_mask
from featurestore.store.schema import SYSTEM_COLUMNS, TableMeta, base_schema

SNAPSHOT_FORMAT = 2
ROWS_FILE = "rows.arrow"
VECTORS_FILE = "vectors.npy"
STALE_TMP_SECONDS = 3600  # a temporary folder this old belongs to a crashed writer
SNAPSHOT_BATCH_BYTES = 32 * 2**20  # vectors per record batch: what memory holds while a snapshot is written
PARQUET_READ_BUFFER = 2**20  # read column chunks page by page, not whole


@dataclass(frozen=True)
class Snapshot:
    """A written snapshot: its folder, the rows (memory-mapped) and the vectors (memory-mapped)."""

    folder: Path
    rows: pa.Table
    vectors: np.ndarray

    def vector_file(self) -> VectorFile:
        return VectorFile(self.folder / VECTORS_FILE)


def snapshot_dir(table_uri: str, version: int, cache: Path | None = None) -> Path:
    """``<cache>/<view>/<encoder_id>/v<version>-f<format>`` for a table at ``<root>/views/<view>/<encoder_id>``;
    ``cache`` defaults to ``<root>/_cache`` (a remote table passes its store's local work folder)."""
    table = Path(table_uri)  # for a URL too, the last two parts are the view and the encoder id
    base = cache if cache is not None else table.parents[2] / "_cache"
    return base / table.parent.name / table.name / f"v{version:08d}-f{SNAPSHOT_FORMAT}"


def read_snapshot(folder: Path, dim: int) -> Snapshot | None:
    """The snapshot in ``folder``, memory-mapped, or None when there is none or it does not hold together.

    A damaged or crafted ``rows.arrow`` is caught by Arrow's full validation (offsets and
    lengths inside their buffers: about 30 ms per million rows) before any column is read, and
    ``vectors.npy`` is never unpickled; a folder reached through a link is not read at all.
    """
    if not folder.is_dir() or _linked(folder):
        return None
    try:
        with pa.memory_map(str(folder / ROWS_FILE), "r") as source:
            rows = pa.ipc.open_file(source).read_all()
        rows.validate(full=True)
        vectors = np.load(folder / VECTORS_FILE, mmap_mode="r", allow_pickle=False).view(np.ndarray)
    except (OSError, ValueError, pa.ArrowInvalid):
        return None
    if vectors.shape != (rows.num_rows, dim) or vectors.dtype != np.dtype("<f4"):
        return None
    return Snapshot(folder, rows, vectors)


def discard_snapshot(folder: Path) -> None:
    """Move a snapshot that does not read aside and delete it, so that it can be written again
    (a damaged one would otherwise send every read to the slower Delta path for good)."""
    if _linked(folder):
        return
    aside = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    try:
        os.rename(folder, aside)
    except OSError:  # gone already, or a read-only store
        return
    shutil.rmtree(aside, ignore_errors=True)


def _linked(folder: Path) -> bool:
    """Whether the snapshot folder, the view and encoder folders above it or its files are links:
    in a store from elsewhere they could point anywhere, and writing a snapshot deletes the
    other entries of its encoder folder."""
    return any(p.is_symlink() for p in (folder.parent.parent, folder.parent, folder, folder / ROWS_FILE, folder / VECTORS_FILE))


def write_snapshot(folder: Path, schema: pa.Schema, num_rows: int, dim: int, batches: Iterable[tuple[pa.RecordBatch, np.ndarray]]) -> bool:
    """Write ``batches`` (rows of ``schema`` with their ``(m, dim)`` vectors) and rename the folder
    into place; False when the store cannot be written (a read-only store still reads).

    ``num_rows`` goes into the .npy header before the first batch; a mismatch at the end, or any
    error from ``batches``, discards the temporary folder.
    """
    if _linked(folder):
        return False
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.mkdir(parents=True)
    except OSError:
        return False
    try:
        written = _write_files(tmp, schema, num_rows, dim, batches)
        if written != num_rows:
            raise RuntimeError(f"snapshot of {folder.name}: expected {num_rows} rows, got {written}")
        os.rename(tmp, folder)
    except OSError:  # read-only store, full disk, or another writer renamed its folder first
        shutil.rmtree(tmp, ignore_errors=True)
        return folder.is_dir()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_others(folder)
    return True


def build_snapshot(folder: Path, paths: Sequence[str], fs: Any, meta: TableMeta) -> bool:
    """Write the snapshot of the latest state held by a table version's data files ``paths``
    (opened through ``fs``, None for local paths) into ``folder``; what :func:`write_snapshot` returns.

    The latest-row mask comes from the small columns, then the rows and vectors go out a record
    batch at a time, so memory never holds the table.
    """
    mask = _latest_mask_of_files(paths, fs, meta.granularity)
    schema = _snapshot_schema(paths, fs)
    return write_snapshot(folder, schema, int(mask.sum()), meta.dim, _snapshot_batches(paths, fs, mask, schema, meta.dim))


def _latest_mask_of_files(paths: Sequence[str], fs: Any, granularity: str) -> np.ndarray:
    """The latest-row mask over the files in order, from the three small columns only."""
    import pyarrow.parquet as pq

    parts = []
    for path in paths:
        with reading(path):
            parts.append(pq.read_table(path, columns=["entity_id", "created_at", "deleted"], filesystem=fs))
    if not parts:
        return np.zeros(0, dtype=bool)
    return np.asarray(latest_mask(pa.concat_tables(parts, promote_options="default"), granularity=granularity), dtype=bool)


def _snapshot_schema(paths: Sequence[str], fs: Any = None) -> pa.Schema:
    """entity_id, content_hash, then every kept column any file has (older files read as nulls)."""
    import pyarrow.parquet as pq

    schemas = []
    for path in paths:
        with reading(path):
            schemas.append(pq.read_schema(path, filesystem=fs))
    merged = pa.unify_schemas(schemas, promote_options="default") if paths else base_schema()
    kept = [pa.field(f.name, f.type) for f in merged if f.name not in SYSTEM_COLUMNS]
    return pa.schema([pa.field("entity_id", pa.string()), pa.field("content_hash", pa.string()), *kept])


def _snapshot_batches(
    paths: Sequence[str], fs: Any, mask: np.ndarray, schema: pa.Schema, dim: int
) -> Iterator[tuple[pa.RecordBatch, np.ndarray]]:
    """The rows ``mask`` keeps, a record batch at a time, as ``schema`` and ``(m, dim)`` vectors."""
    import pyarrow.parquet as pq

    batch_rows = max(1024, SNAPSHOT_BATCH_BYTES // (dim * 4))
    offset = 0
    for path in paths:
        with reading(path):
            source = pq.ParquetFile(path, buffer_size=PARQUET_READ_BUFFER, filesystem=fs)
            names = source.schema_arrow.names
            for batch in source.iter_batches(batch_size=batch_rows, columns=[c for c in ("embedding", *schema.names) if c in names]):
                keep = mask[offset : offset + batch.num_rows]
                offset += batch.num_rows
                if not keep.any():
                    continue
                if not keep.all():
                    batch = batch.filter(pa.array(keep))
                vectors = embeddings_to_numpy(pa.chunked_array([batch.column("embedding")]), dim)
                yield _conform(batch, schema), vectors


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``'s columns: cast where types differ, nulls where missing."""
    have = set(batch.schema.names)
    arrays = [batch.column(f.name).cast(f.type) if f.name in have else pa.nulls(batch.num_rows, f.type) for f in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _write_files(tmp: Path, schema: pa.Schema, num_rows: int, dim: int, batches: Iterable[tuple[pa.RecordBatch, np.ndarray]]) -> int:
    """Stream the batches into ``rows.arrow`` and ``vectors.npy``; the number of rows written."""
    written = 0
    with open(tmp / VECTORS_FILE, "wb") as vectors_out, pa.OSFile(str(tmp / ROWS_FILE), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        header = {"descr": "<f4", "fortran_order": False, "shape": (num_rows, dim)}
        np.lib.format.write_array_header_1_0(vectors_out, header)
        for batch, vectors in batches:
            if vectors.shape != (batch.num_rows, dim):
                raise ValueError(f"a snapshot batch has {batch.num_rows} rows but vectors of shape {vectors.shape}")
            writer.write_batch(batch)
            vectors_out.write(memoryview(np.ascontiguousarray(vectors, "<f4")).cast("B"))
            written += batch.num_rows
    return written


def _remove_others(keep: Path) -> None:
    """Drop older versions' snapshots and temporary folders of crashed writers; best effort."""
    now = time.time()
    for other in keep.parent.iterdir():
        try:
            crashed = other.name.endswith(".tmp") and now - other.stat().st_mtime > STALE_TMP_SECONDS
            if other != keep and (crashed or other.name.startswith("v")):
                shutil.rmtree(other) if other.is_dir() else other.unlink()
        except OSError:
            continue


class VectorFile:
    """The vectors of a snapshot, read by rows with plain file reads.

    A memory map leaves every page it touched in the process's resident set, so one pass over
    a large table (an index build) would hold the vectors twice: mapped and in the index. Reads
    into fresh arrays hold one chunk at a time. Indexing mirrors numpy: ``vf[a:b]`` and
    ``vf[rows]`` return new ``float32`` arrays.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(f)
            self.offset = f.tell()
        if dtype != np.dtype("<f4") or len(shape) != 2:
            raise ValueError(f"{path} does not hold a 2-d float32 array")
        self.shape: tuple[int, int] = (int(shape[0]), int(shape[1]))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if step != 1:
                raise IndexError("VectorFile slices take a step of 1")
            return self._read(start, max(start, stop))
        return self._take(np.asarray(key, dtype=np.int64))

    def _read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, self.shape[1]), dtype=np.float32)
        width = self.shape[1] * 4
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset + start * width)
            view, done = memoryview(out).cast("B"), 0
            while done < len(view):
                got = f.readinto(view[done:])
                if not got:
                    raise OSError(f"{self.path} ends before row {stop}")
                done += got
        return out

    def _take(self, rows: np.ndarray, chunk: int = 65_536) -> np.ndarray:
        """Rows in any order, reading the file a chunk of rows at a time."""
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"row index out of range for {self.shape[0]} rows")
        order = np.argsort(rows, kind="stable")
        ordered = rows[order]
        for start in range(int(ordered[0]) // chunk * chunk, int(ordered[-1]) + 1, chunk):
            lo, hi = np.searchsorted(ordered, [start, start + chunk])
            if lo < hi:
                out[order[lo:hi]] = self._read(start, min(start + chunk, self.shape[0]))[ordered[lo:hi] - start]
        return out
