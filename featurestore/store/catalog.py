"""The store: a root folder holding one feature table per (view, encoder), and run records.

Layout under the root::

    views/<view>/<encoder_id>/      Delta table (Parquet files + _delta_log)
    runs/<utc time>-<view>-<encoder_id>.json   one record per materialize run

The catalog is the folder tree itself: there is no second index that could disagree with it.

A remote root (``s3://bucket/prefix`` ...) holds the ``views/`` tables; everything else lives
in a local work folder, ``Store.path`` (see :func:`featurestore.settings.work_dir`). Runs,
indexes and heads are written there and then published under the remote root, and fetched from
it before they are read (see :mod:`featurestore.store.artifacts`); locks, staging and the read
cache stay local.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow.compute as pc

from featurestore import settings
from featurestore.errors import NotFoundError, StoreError
from featurestore.store.artifacts import Artifacts
from featurestore.store.latest import latest_mask
from featurestore.store.remote import RemoteFolder, check_scheme, is_remote, normalized
from featurestore.store.schema import TableMeta, check_view_name
from featurestore.store.table import FeatureTable


@dataclass(frozen=True)
class TableInfo:
    """One row of the catalog."""

    view: str
    encoder_id: str
    encoder_name: str
    dim: int
    granularity: str
    rows: int
    entities: int
    versions: int
    version: int
    last_update: str | None
    path: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Store:
    """A feature store rooted at a folder (``--store``, ``FEATURESTORE_HOME`` or ``~/.featurestore``)."""

    @classmethod
    def of(cls, store: "Store | str | os.PathLike[str] | None") -> "Store":
        """``store`` itself when it is a :class:`Store`, else the store at that root (None: the
        configured default): what every function taking ``store=`` does with it."""
        return store if isinstance(store, Store) else cls(store)

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        root_text = settings.store_root(root)
        if root_text.startswith("file://"):
            root_text = unquote(root_text.removeprefix("file://"))
        self.remote: RemoteFolder | None = None
        self.artifacts: Artifacts | None = None
        if is_remote(root_text):
            check_scheme(root_text)
            self.root = normalized(root_text)
            options = settings.storage_options()
            self.remote = RemoteFolder(self.root, options)
            self.path = settings.work_dir(self.root)  # the local part of a remote store
            self.artifacts = Artifacts(self.root, options, self.path)
        else:
            self.path = Path(root_text).expanduser().absolute()
            self.root = str(self.path)

    def __repr__(self) -> str:
        return f"Store({self.root!r})"

    @property
    def storage_options(self) -> dict[str, str] | None:
        return self.remote.storage_options if self.remote else None

    def staging_dir(self, view: str, encoder_id: str) -> Path:
        """Where the runs of table (``view``, ``encoder_id``) stage their shards (``_staging/``, local)."""
        return self.path / "_staging" / check_view_name(view) / encoder_id

    def lock_dir(self, view: str) -> Path:
        """Where the locks of ``view`` and of its tables live (``locks/<view>/``, local)."""
        return self.path / "locks" / check_view_name(view)

    def table_uri(self, view: str, encoder_id: str) -> str:
        return self.table(view, encoder_id).uri

    def table(self, view: str, encoder_id: str, meta: TableMeta | None = None) -> FeatureTable:
        return self._table_at(check_view_name(view), encoder_id, meta)

    def _table_at(self, view: str, encoder_id: str, meta: TableMeta | None = None) -> FeatureTable:
        """The table in folder ``views/<view>/<encoder_id>``, whatever the folder is called."""
        uri = f"{self.root}/views/{view}/{encoder_id}" if self.remote else str(self.path / "views" / view / encoder_id)
        return FeatureTable(uri, meta, self.storage_options, cache=self.path / "_cache")

    def publish(self, relative: str, *, replace: bool = False, names: Any = None) -> None:
        """Share what was just written at the work folder's ``relative`` through the remote root
        (nothing to do for a local store). ``replace``: a folder whose next publish replaces it
        (an index; ``names``: only these of its files); else files written once (a model
        version, a run record)."""
        if self.artifacts is None:
            return
        if replace:
            self.artifacts.publish_generation(relative, names)
        else:
            self.artifacts.upload(relative)

    def fetch(self, relative: str, *, replace: bool = False, **which: Any) -> Path:
        """The work folder's ``relative``, first brought up to date from the remote root (see
        :meth:`publish`); ``which`` narrows the files of an immutable folder (marker, names,
        pattern, newest: see :meth:`Artifacts.download_missing`)."""
        if self.artifacts is not None:
            if replace:
                self.artifacts.fetch_generation(relative)
            else:
                self.artifacts.download_missing(relative, **which)
        return self.path / relative

    def read_current(self, relative: str, name: str) -> tuple[str, str | None]:
        """Where file ``name`` of a replaced folder (an index) is, and its text (None when
        missing), without fetching the folder: from the bucket for a remote store."""
        if self.artifacts is not None:
            return f"{self.root}/{relative}/{name}", self.artifacts.read_current(relative, name)
        path = self.path / relative / name
        return str(path), path.read_bytes().decode(errors="replace") if path.is_file() else None

    def _subfolders(self, relative: str) -> list[str]:
        if self.remote:
            return self.remote.subfolders(relative)
        folder = self.path / relative
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def _is_table(self, view: str, encoder_id: str) -> bool:
        if self.remote:
            return self.remote.is_folder(f"views/{view}/{encoder_id}/_delta_log")
        return (self.path / "views" / view / encoder_id / "_delta_log").is_dir()

    def ensure_writable(self) -> Path | None:
        """Create the root if needed and prove a file can be written there; else a StoreError.

        Returns the top-most folder this call created (None when the root existed), so that a
        caller that fails later can leave the file system as it found it. For a remote root the
        bucket is checked by listing it and the local work folder is what gets created.
        """
        if self.remote:
            self.remote.check_reachable()
        probe = self.path / f".write-probe-{uuid.uuid4().hex}"
        created = next((p for p in reversed([self.path, *self.path.parents]) if not p.exists()), None)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"cannot write to the store at {self.root} ({exc.strerror or exc}); "
                "pass a writable folder as `store` or FEATURESTORE_HOME"
            ) from None
        return created

    def tables(self, view: str | None = None) -> list[FeatureTable]:
        """Every feature table in the store (of one view when given)."""
        views = [check_view_name(view)] if view else self._subfolders("views")
        return [
            self._table_at(v, enc)
            for v in views
            for enc in self._subfolders(f"views/{v}")
            if self._is_table(v, enc)
        ]

    def views(self) -> list[str]:
        """The names of the store's views (folders under ``views/``), sorted."""
        return self._subfolders("views")

    def encoder_ids(self, view: str) -> list[str]:
        return [Path(t.uri).name for t in self.tables(view)]

    def resolve_table(self, view: str, encoder: str | None = None) -> FeatureTable:
        """The table of ``view`` for an encoder id or name; the only one when the view has one."""
        tables = self.tables(view)
        if not tables:
            known = self.views()
            raise NotFoundError(f"view {view!r} does not exist in {self.root}; views: {', '.join(known) or 'none yet'}{did_you_mean(view, known)}")
        if encoder is None:
            if len(tables) == 1:
                return tables[0]
            named = ", ".join(f"{t.meta.encoder_name} ({Path(t.uri).name})" for t in tables)
            raise StoreError(f"view {view!r} has several encoders: {named}; choose one with `encoder` (its name or id)")
        matches = [t for t in tables if Path(t.uri).name == encoder or t.meta.encoder_name == encoder]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(Path(t.uri).name for t in matches)
            raise StoreError(f"view {view!r} has several tables for encoder {encoder!r} ({ids}); pass the encoder id as `encoder`")
        known = sorted({t.meta.encoder_name for t in tables} | {Path(t.uri).name for t in tables})
        raise NotFoundError(f"view {view!r} has no table for encoder {encoder!r}; it has: {', '.join(self.encoder_ids(view))}"
                            f"{did_you_mean(encoder, known)}")

    def info(self) -> list[TableInfo]:
        """Views, encoders, live row counts, versions and last update of every table (the index of
        each, with its coverage: :func:`featurestore.index.index_status`)."""
        rows = []
        for t in self.tables():
            table, version = t.scan(["entity_id", "created_at", "deleted"])
            live_rows = table.filter(latest_mask(table, granularity=t.meta.granularity)) if table.num_rows else table
            live = live_rows.num_rows
            entities = pc.count_distinct(live_rows.column("entity_id")).as_py() if live else 0
            meta = t.meta
            updated = t.last_update()
            rows.append(
                TableInfo(
                    view=meta.view,
                    encoder_id=meta.encoder_id,
                    encoder_name=meta.encoder_name,
                    dim=meta.dim,
                    granularity=meta.granularity,
                    rows=live,
                    entities=entities,
                    versions=version + 1,
                    version=version,
                    last_update=updated.isoformat(timespec="seconds") if updated else None,
                    path=t.uri,
                )
            )
        return rows

    # ------------------------------------------------------------- run records
    def record_run(self, summary: dict[str, Any], kind: str = "materialize") -> Path:
        """Keep a run's summary as JSON (for ``featurestore runs``, info, reports and throughput history).

        Materialize runs go to ``runs/`` (``view_source`` reads the newest of a table there), the
        others to ``runs/<kind>/`` (``index``, ``train``, ``refresh``). Inside a Prefect flow run
        the record names it (``flow_run_id``, ``flow_run_name``).
        """
        if kind not in RUN_KINDS:
            raise StoreError(f"run kind must be one of: {', '.join(RUN_KINDS)}. Got {kind!r} instead.")
        relative = "runs" if kind == "materialize" else f"runs/{kind}"
        runs = self.path / relative
        runs.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        path = runs / f"{stamp}-{summary.get('view')}-{summary.get('encoder_id')}.json"
        record = {"kind": kind, **summary, **(_prefect_run() or {})}
        record.setdefault("finished_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=2, default=str))
        tmp.replace(path)
        self.publish(f"{relative}/{path.name}")
        return path

    def last_run(self, view: str, encoder_id: str) -> dict[str, Any] | None:
        """The newest recorded materialize run of (view, encoder_id), or None."""
        pattern = f"[0-9]*-{view}-{encoder_id}.json"  # named by time: a bucket's listing of runs/ also holds runs/index/... (not these)
        runs = sorted(self.fetch("runs", pattern=pattern, newest=1).glob(pattern))
        return _read_run(runs[-1]) if runs else None

    def view_source(self, view: str, encoder_id: str) -> Any:
        """The source the view was last materialized from, rebuilt from its run record.

        Heads that need the raw inputs (a TF-IDF baseline, BM25, fine-tuning) read them from
        here; a missing or moved source is a user error naming the path to pass instead.
        """
        from featurestore.sources.batch import from_dict

        run = self.last_run(view, encoder_id)
        spec = (run or {}).get("source_spec")
        if not spec:
            raise StoreError(f"view {view!r} has no run record naming its source; pass the source path")
        path = spec.get("path")
        if path and not Path(path).exists():
            raise StoreError(f"the source of view {view!r} ({path}) is gone; pass the source path")
        return from_dict(spec)

    def source_content(self, view: str, encoder_id: str, hashes: dict[str, Any]) -> dict[str, Any]:
        """The content (a text, or an image's path) of the entities in ``hashes`` (entity id ->
        stored content hash) read from the view's source, for those whose source row still has
        the stored hash; reading stops once every one is found. Raises like :meth:`view_source`."""
        found: dict[str, Any] = {}
        for batch in self.view_source(view, encoder_id).batches():
            for entity, content, digest in zip(batch.entity_id, batch.content, batch.content_hash):
                if entity in hashes and hashes[entity] == digest:
                    found[entity] = content
            if len(found) == len(hashes):
                break
        return found

    def runs(self, limit: int = 20, kinds: tuple[str, ...] = ("materialize",), view: str | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` run records of ``kinds`` (of ``view`` when given), oldest first."""
        files: list[Path] = []
        for kind in kinds:
            relative = "runs" if kind == "materialize" else f"runs/{kind}"
            folder = self.fetch(relative, pattern="[0-9]*.json", newest=limit if view is None else None)  # not the kinds' subfolders
            if folder.is_dir():
                files += folder.glob("[0-9]*.json")
        files = sorted(files, key=lambda f: f.name)  # names start with the UTC time of the record
        if view is None:
            return [_read_run(f) for f in files[-limit:]]
        records = [r for r in map(_read_run, files) if view in str(r.get("view")).split(",")]  # a refresh names its views
        return records[-limit:]


RUN_KINDS = ("materialize", "index", "train", "refresh")


def _prefect_run() -> dict[str, str] | None:
    """The Prefect flow run this process is working in, when Prefect is loaded and in a run."""
    import sys

    if "prefect.context" not in sys.modules:
        return None  # never imported here: no flow run to name
    from prefect.context import FlowRunContext, TaskRunContext

    flow = FlowRunContext.get()
    if flow is not None and flow.flow_run is not None:
        return {"flow_run_id": str(flow.flow_run.id), "flow_run_name": flow.flow_run.name}
    task = TaskRunContext.get()
    if task is not None and getattr(task.task_run, "flow_run_id", None):
        return {"flow_run_id": str(task.task_run.flow_run_id)}
    return None


def did_you_mean(name: str, known: list[str]) -> str:
    """`` (did you mean 'x'?)`` for the known name closest to a misspelt one (difflib), else ''."""
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _read_run(path: Path) -> dict[str, Any]:
    """One run record; a damaged or foreign one is a StoreError naming it (records are history only)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        record = exc
    if not isinstance(record, dict):
        why = f" ({str(record)[:120]})" if isinstance(record, Exception) else ""
        raise StoreError(f"the run record {path} cannot be read{why}; delete it (run records only keep a store's history)")
    return record
