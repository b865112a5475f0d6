"""One Delta Lake table of embeddings for one (view, encoder): append-only history.

The latest state of an entity is its newest non-deleted row (for token views: all rows of its
newest write; the rule is :mod:`featurestore.store.latest`). Reads return ids, a ``(n, dim)
float32`` matrix viewed straight from the Parquet buffers, and the kept columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import InvalidArgumentError, SchemaMismatchError, StoreError
from featurestore.params import non_negative_int
from featurestore.store.codec import embeddings_to_numpy
from featurestore.store.datafiles import RESTORE, local_files, outside, reading
from featurestore.store.frame import FeatureFrame
from featurestore.store.latest import latest_mask, newest_rows
from featurestore.store.remote import describe
from featurestore.store.schema import SYSTEM_COLUMNS, TableMeta, base_schema
from featurestore.store.snapshot import Snapshot, build_snapshot, discard_snapshot, read_snapshot, snapshot_dir

AsOf = int | datetime | str | None
DELTA_RETENTION_HOURS = 168  # Delta's default vacuum retention (7 days)


@dataclass
class Changes:
    """What commits after a version wrote: each touched entity's newest row among them.

    ``ids``, ``hashes`` and ``vectors`` are the live ones; ``removed`` the entities whose newest
    row is a tombstone; ``version`` is the table version read.
    """

    ids: np.ndarray
    hashes: np.ndarray
    vectors: np.ndarray
    removed: list[str]
    version: int


def _writer_properties():
    from deltalake import ColumnProperties, WriterProperties

    return WriterProperties(
        compression="UNCOMPRESSED",  # float vectors do not compress; reads stay a memory map
        column_properties={
            "embedding": ColumnProperties(dictionary_enabled=False, statistics_enabled="NONE"),
        },
    )


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


class FeatureTable:
    """A feature table at ``uri`` (created on first append)."""

    def __init__(
        self,
        uri: str,
        meta: TableMeta | None = None,
        storage_options: dict[str, str] | None = None,
        *,
        cache: Path | None = None,
    ) -> None:
        self.uri = uri
        self._meta = meta
        self.storage_options = storage_options
        self.cache = cache  # where read snapshots go (default: _cache beside the views/ folder)
        self._fs: Any = None

    # ---------------------------------------------------------------- metadata
    def exists(self) -> bool:
        from deltalake import DeltaTable

        try:
            return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options)
        except OSError as exc:
            raise StoreError(f"cannot read {self.uri}: {describe(exc)}; check the storage options") from None

    def delta(self, as_of: AsOf = None):
        """The ``deltalake.DeltaTable`` at the latest version, or as of a version or time."""
        from deltalake import DeltaTable
        from deltalake.exceptions import DeltaError, TableNotFoundError

        try:
            dt = DeltaTable(self.uri, storage_options=self.storage_options)
        except TableNotFoundError:
            raise StoreError(f"no feature table at {self.uri}; materialize the view first") from None
        except (DeltaError, OSError) as exc:
            raise StoreError(f"cannot load {self.uri}: {describe(exc)}; if its _delta_log is damaged: {RESTORE.lower()}") from None
        if self._meta is None:
            self._meta = TableMeta.from_json(dt.metadata().description, self.uri)
        if as_of is not None:
            version = _parse_as_of(as_of)  # a malformed as_of is the caller's mistake, not the table's
            try:
                dt.load_as_version(version)
            except (DeltaError, TableNotFoundError, ValueError, OSError) as exc:
                raise StoreError(f"cannot load {self.uri} as of {as_of!r}: {describe(exc)}") from None
        return dt

    @property
    def meta(self) -> TableMeta:
        if self._meta is None:
            self._meta = TableMeta.from_json(self.delta().metadata().description, self.uri)
        return self._meta

    def kept_columns(self) -> list[str]:
        """The columns kept beside the vectors, from the schema alone (no data file is read)."""
        return [f.name for f in self.delta().schema().fields if f.name not in SYSTEM_COLUMNS]

    def version(self) -> int | None:
        """The newest committed version, or None when the table does not exist yet."""
        return self.delta().version() if self.exists() else None

    def last_update(self) -> datetime | None:
        if not self.exists():
            return None
        entry = self.delta().history(1)[0]
        return datetime.fromtimestamp(entry["timestamp"] / 1000, tz=timezone.utc)

    def check_compatible(self, meta: TableMeta) -> None:
        """Refuse to write vectors of another encoder, dimension or granularity into this table."""
        if not self.exists():
            return
        have = self.meta
        for field_name in ("encoder_id", "dim", "granularity"):
            if getattr(have, field_name) != getattr(meta, field_name):
                raise SchemaMismatchError(
                    f"view {meta.view!r} already has a table at {self.uri} with {field_name}="
                    f"{getattr(have, field_name)!r}, but this write has {field_name}={getattr(meta, field_name)!r}; "
                    "use another view name or the encoder the view was built with"
                )

    # ------------------------------------------------------------------ writes
    def append(self, rows: pa.Table, meta: TableMeta, *, commit_properties: Any = None) -> int:
        """Append rows in one atomic commit and return the new version.

        ``commit_properties`` (a ``deltalake.CommitProperties``) can tag the commit, e.g. with an
        app transaction id that makes a retried write a no-op.
        """
        from deltalake import write_deltalake

        self.check_compatible(meta)
        self._meta = meta
        creating = not self.exists()
        if _is_local(self.uri):
            Path(self.uri).mkdir(parents=True, exist_ok=True)
        write_deltalake(
            self.uri,
            rows,
            mode="append",
            name=meta.view if creating else None,
            description=meta.to_json() if creating else None,
            schema_mode=None if creating else "merge",
            writer_properties=_writer_properties(),
            storage_options=self.storage_options,
            commit_properties=commit_properties,
        )
        return int(self.delta().version())

    def compact(self, *, vacuum: bool = False, retention_hours: int = DELTA_RETENTION_HOURS) -> dict[str, Any]:
        """Merge small files (optimize) and, when asked, delete files older than the retention.

        A ``retention_hours`` below Delta's default retention is the caller's explicit choice:
        deltalake's own check, which refuses it, is turned off for it (time travel to the
        versions whose files it deletes stops working)."""
        non_negative_int("retention hours (`retention_hours`)", retention_hours)
        dt = self.delta()
        metrics = dt.optimize.compact(writer_properties=_writer_properties())
        removed: list[str] = []
        if vacuum:
            below_default = retention_hours < DELTA_RETENTION_HOURS
            removed = dt.vacuum(retention_hours=retention_hours, dry_run=False, enforce_retention_duration=not below_default)
        return {"optimize": metrics, "vacuumed_files": len(removed), "version": dt.version()}

    # ------------------------------------------------------------------- reads
    def scan(self, columns: Sequence[str] | None = None, as_of: AsOf = None) -> tuple[pa.Table, int]:
        """All rows (history included) of the requested columns, and the version read."""
        dt = self.delta(as_of)
        version = int(dt.version())
        import pyarrow.parquet as pq

        parts = []
        paths, fs = self.data_files(dt)
        for path in paths:
            with reading(path):
                names = pq.read_schema(path, filesystem=fs).names
                cols = [c for c in columns if c in names] if columns else None
                parts.append(pq.read_table(path, columns=cols, memory_map=True, filesystem=fs))
        if not parts:
            schema = base_schema()
            return schema.empty_table().select([c for c in (columns or schema.names) if c in schema.names]), version
        table = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        return table, version

    def latest(
        self,
        columns: Sequence[str] | None = None,
        *,
        as_of: AsOf = None,
        with_vectors: bool = True,
    ) -> FeatureFrame:
        """The latest state (as of a version or time): ids, vectors and the requested columns.

        ``columns`` None returns every non-system column that is kept (label, text ...). Reads of
        the newest version are served from a memory-mapped snapshot after the first one.
        """
        if as_of is None and with_vectors:
            return self._latest_from_snapshot(columns)
        return self._latest_from_delta(columns, as_of=as_of, with_vectors=with_vectors)

    def _latest_from_snapshot(self, columns: Sequence[str] | None) -> FeatureFrame:
        dt = self.delta()  # loaded once: on object storage each load is a round of requests
        version = int(dt.version())
        snap = self._snapshot_of(dt)
        if snap is None:  # the store cannot be written: read the Delta table instead
            return self._latest_from_delta(columns, as_of=version, with_vectors=True)
        names = [c for c in snap.rows.column_names if c not in ("entity_id", "content_hash")]
        extra = list(columns) if columns is not None else names
        missing = [c for c in extra if c not in names]
        if missing:
            raise StoreError(f"columns {missing} are not in {self.uri}; it has: {', '.join(names)}")
        ids = snap.rows.column("entity_id").to_numpy(zero_copy_only=False)
        return FeatureFrame(ids, snap.vectors, snap.rows.select(extra), version, self.meta.encoder_id)

    def snapshot(self, version: int | None = None) -> Snapshot | None:
        """The memory-mapped snapshot of the latest state at ``version`` (default: the newest),
        written first when missing (for a remote table, in the local work folder); None when
        that folder cannot be written.

        The write streams: the latest-row mask comes from the small columns, then the rows and
        vectors go out a record batch at a time, so memory never holds the table.
        """
        return self._snapshot_of(self.delta(version))

    def _snapshot_of(self, dt: Any) -> Snapshot | None:
        if self.cache is None and not _is_local(self.uri):
            return None  # a remote table opened on its own has no local folder to cache in
        folder = snapshot_dir(self.uri, int(dt.version()), self.cache)
        snap = read_snapshot(folder, self.meta.dim)
        if snap is not None:
            return snap
        if folder.is_dir():  # there but does not read (damaged): written again
            discard_snapshot(folder)
        paths, fs = self.data_files(dt)
        if not build_snapshot(folder, paths, fs, self.meta):
            return None
        return read_snapshot(folder, self.meta.dim)

    def _latest_from_delta(self, columns: Sequence[str] | None, *, as_of: AsOf, with_vectors: bool) -> FeatureFrame:
        wanted = ["entity_id", "created_at", "deleted"]
        if with_vectors:
            wanted.append("embedding")
        extra = list(columns) if columns is not None else None
        table, version = self.scan(None if extra is None else wanted + [c for c in extra if c not in wanted], as_of)
        mask = latest_mask(table, granularity=self.meta.granularity)
        if not pc.all(mask).as_py():
            table = table.filter(mask)
        if extra is None:
            extra = [c for c in table.column_names if c not in SYSTEM_COLUMNS]
        missing = [c for c in extra if c not in table.column_names]
        if missing:
            raise StoreError(f"columns {missing} are not in {self.uri}; it has: {', '.join(table.column_names)}")
        dim = self.meta.dim
        vectors = embeddings_to_numpy(table.column("embedding"), dim) if with_vectors else np.zeros((table.num_rows, 0), np.float32)
        ids = table.column("entity_id").to_numpy(zero_copy_only=False)
        return FeatureFrame(ids, vectors, table.select(extra), version, self.meta.encoder_id)

    def rows_with_hashes(self, hashes: set[str], columns: Sequence[str]) -> pa.Table:
        """One stored row per content hash in ``hashes`` (any version: a vector depends only on
        the content and the encoder), read file by file so memory holds one file at a time."""
        import pyarrow.parquet as pq

        remaining = set(hashes)
        found: list[pa.Table] = []
        if not remaining or not self.exists():
            return pa.table({c: [] for c in ["content_hash", *columns]})
        paths, fs = self.data_files(self.delta())
        for path in paths:
            with reading(path):
                hashes_here = pq.read_table(path, columns=["content_hash"], memory_map=True, filesystem=fs).column("content_hash")
            wanted = pc.is_in(hashes_here, value_set=pa.array(sorted(remaining), pa.string()))
            index = np.flatnonzero(pc.fill_null(wanted, False).to_numpy(zero_copy_only=False))
            if not len(index):
                continue
            values = hashes_here.take(pa.array(index)).to_pylist()
            first: dict[str, int] = {}
            for i, h in zip(index.tolist(), values):
                first.setdefault(h, i)
            with reading(path):
                part = pq.read_table(path, columns=["content_hash", *columns], memory_map=True, filesystem=fs).take(pa.array(list(first.values())))
            found.append(part)
            remaining -= set(first)
            if not remaining:
                break
        if not found:
            return pa.table({c: [] for c in ["content_hash", *columns]})
        return pa.concat_tables(found, promote_options="default")

    def state(self, as_of: AsOf = None) -> dict[str, tuple[str, str | None]]:
        """``entity_id -> (content_hash, attrs_hash)`` of the latest live rows (what a re-run compares to)."""
        if not self.exists():
            return {}
        table, _ = self.scan(["entity_id", "content_hash", "attrs_hash", "created_at", "deleted"], as_of)
        table = table.filter(latest_mask(table, granularity=self.meta.granularity))
        attrs = table.column("attrs_hash").to_pylist() if "attrs_hash" in table.column_names else [None] * table.num_rows
        return dict(zip(table.column("entity_id").to_pylist(), zip(table.column("content_hash").to_pylist(), attrs)))


    def changes_since(self, version: int) -> Changes | None:
        """The rows committed after ``version``, read from the files added since: time and memory
        follow the change, not the table.

        None when that would not be sound, and the caller compares full states instead: files
        were removed since (compaction or a delete rewrote rows, so a new file can hold old ones),
        or ``version`` cannot be loaded. Appended rows are taken to be newer
        than the rows they follow (``created_at`` is the write time).
        """
        import pyarrow.parquet as pq

        now = self.delta()
        try:
            before = set(self.data_files(self.delta(version))[0])
        except StoreError:
            return None
        current, fs = self.data_files(now)
        if not before <= set(current):
            return None
        columns = ["entity_id", "content_hash", "created_at", "deleted", "embedding"]
        parts = []
        for path in current:
            if path not in before:
                with reading(path):
                    parts.append(pq.read_table(path, columns=columns, filesystem=fs))
        table = pa.concat_tables(parts, promote_options="default") if parts else base_schema().empty_table().select(columns)
        table = table.take(pa.array(newest_rows(table)))
        deleted = np.asarray(pc.fill_null(table.column("deleted"), False), dtype=bool)
        live = table.filter(pa.array(~deleted))
        return Changes(
            ids=live.column("entity_id").to_numpy(zero_copy_only=False),
            hashes=live.column("content_hash").to_numpy(zero_copy_only=False),
            vectors=embeddings_to_numpy(live.column("embedding"), self.meta.dim),
            removed=table.filter(pa.array(deleted)).column("entity_id").to_pylist(),
            version=int(now.version()),
        )

    def data_files(self, dt: Any) -> tuple[list[str], Any]:
        """The data files of a table version in log order, and the filesystem that opens them
        (None for local paths; deltalake's storage handler, with the table's options, for a remote table)."""
        if _is_local(self.uri):
            return local_files(dt, self.uri), None
        if self._fs is None:
            import pyarrow.fs as pafs
            from deltalake.fs import DeltaStorageHandler

            self._fs = pafs.PyFileSystem(DeltaStorageHandler(self.uri, self.storage_options))
        prefix = dt.table_uri.rstrip("/") + "/"  # deltalake's spelling of the root (percent-encoded)
        paths = []
        for uri in dt.file_uris():
            relative = unquote(uri[len(prefix) :])
            if not uri.startswith(prefix) or ".." in relative.split("/"):
                raise StoreError(outside(self.uri, uri))
            paths.append(relative)
        return paths, self._fs


def _parse_as_of(as_of: AsOf) -> int | datetime:
    if isinstance(as_of, (int, datetime)):
        return as_of
    text = str(as_of).strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgumentError(f"`as_of` must be a table version (an integer) or an ISO 8601 time. Got {as_of!r} instead.") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
