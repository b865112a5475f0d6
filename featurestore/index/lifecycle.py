"""An index's life beside its view: build, update (or rebuild), ensure, load, and where its files live (local and published)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featurestore.encoders import BaseEncoder, from_meta
from featurestore.errors import InvalidArgumentError, StoreError
from featurestore.index.choice import IndexType, kind_of, parse_bytes
from featurestore.index.delta import FOLD_ROWS, FOLD_SHARE
from featurestore.index.files import INFO_FILE
from featurestore.index.vector_index import IndexInfo, Rows, VectorIndex
from featurestore.locks import view_lock
from featurestore.params import fraction
from featurestore.store import FeatureTable, Store, TableInfo
from featurestore.store.artifacts import LOCAL_GENERATION
from featurestore.store.table import Changes


@dataclass(frozen=True)
class IndexResult:
    """What :func:`build_index`, :func:`update_index` or :func:`ensure_index` did, and the index it left.

    ``info`` is what the index's ``index.json`` now holds (factory, rows, recall, table version ...).
    ``added`` and ``removed`` are an update's row counts (None for a build: every row went in) and
    ``seconds`` its wall time (None for a build: see ``info.build_seconds``).
    """

    info: IndexInfo
    rebuilt: bool  # the index file was written from the table's whole latest state (a build, or an update that had to)
    added: int | None = None
    removed: int | None = None
    seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """One JSON object: rebuilt, added, removed (and an update's seconds), then the fields of ``info``."""
        head: dict[str, Any] = {"rebuilt": self.rebuilt, "added": self.added, "removed": self.removed}
        if self.seconds is not None:
            head["seconds"] = self.seconds
        return {**head, **asdict(self.info)}


def _relative(view: str, encoder_id: str) -> str:
    """Where a table's index lives under the store root: the one place this layout is written down."""
    return f"indexes/{view}/{encoder_id}"


def index_dir(table: FeatureTable, *, store: Store, fetch: bool = True) -> Path:
    """The index's folder in the (work) folder of the store; for a remote store, first brought
    up to the generation published in the bucket unless ``fetch`` is False."""
    relative = _relative(table.meta.view, table.meta.encoder_id)
    return store.fetch(relative, replace=True) if fetch else store.path / relative


def index_json(table: FeatureTable, *, store: Store) -> Path:
    """The local ``index.json`` of the table's index, replaced by every save (what a cheap freshness check stats)."""
    return index_dir(table, store=store, fetch=False) / INFO_FILE


def local_index_dir(table: FeatureTable, *, store: Store) -> Path:
    """The folder to write an index into: it stops claiming a published generation until published."""
    folder = index_dir(table, store=store, fetch=False)
    (folder / LOCAL_GENERATION).unlink(missing_ok=True)
    return folder


def publish_index(table: FeatureTable, *, store: Store) -> None:
    """Share a just-written index through a remote store's bucket (nothing to do locally)."""
    files = json.loads(index_json(table, store=store).read_text()).get("files") or {}
    store.publish(_relative(table.meta.view, table.meta.encoder_id), replace=True, names={INFO_FILE, *files.values()})


def build_index(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    index_type: IndexType = "auto",
    memory_budget: str | int | None = None,
    target_recall: float = 0.95,
    progress: Callable[[int, int], None] | None = None,
) -> IndexResult:
    """Build (or rebuild) the FAISS index of a view's latest state and save it beside the table.
    ``progress(added, rows)`` is called as the vectors go in.

    Vectors stream from the table's snapshot file a chunk at a time, so the build's memory is
    the index plus a working set (see ``choice.build_overhead``), not the table as well.
    """
    store = Store.of(store)
    table = store.resolve_table(view, encoder)
    if table.meta.granularity == "token":
        raise StoreError(f"view {view!r} holds token rows; indexes are built over sentence or image views")
    budget = parse_bytes(memory_budget)
    with view_lock(table.meta.view, "index build", store=store, encoder_id=table.meta.encoder_id):  # one writer per table: see featurestore.locks
        return IndexResult(_build_index(store, table, index_type, budget, target_recall, progress), rebuilt=True)


def _build_index(store: Store, table: FeatureTable, index_type: IndexType, memory_budget: int | None, target_recall: float,
                 progress: Callable[[int, int], None] | None = None) -> IndexInfo:
    ids, hashes, vectors, version = _latest_rows(table)
    built = VectorIndex.build(
        ids,
        vectors,
        hashes=hashes,
        view=table.meta.view,
        encoder_id=table.meta.encoder_id,
        metric=table.meta.metric,
        table_version=version,
        index_type=index_type,
        memory_budget=memory_budget,
        target_recall=target_recall,
        progress=progress,
    )
    built.save(local_index_dir(table, store=store))
    publish_index(table, store=store)
    _record(store, built.info, "build", built.info.rows, 0, built.info.build_seconds)
    return built.info


def _record(store: Store, info: IndexInfo, action: str, added: int, removed: int, seconds: float) -> None:
    """The run record of an index build or update (``featurestore runs``)."""
    store.record_run({"view": info.view, "encoder_id": info.encoder_id, "action": action, "factory": info.factory, "rows": info.rows,
                      "added": added, "removed": removed, "recall_at_10": info.recall_at_10, "table_version": info.table_version,
                      "seconds": round(seconds, 3), "rows_per_second": added / seconds if seconds > 0 else 0.0, "failed": 0}, kind="index")


def _latest_rows(table: FeatureTable) -> tuple[np.ndarray, np.ndarray, Rows, int]:
    """Entity ids, content hashes, vectors and version of the latest state: vectors as a file read
    by chunks when the table has a snapshot, in memory for a remote or read-only store."""
    version = int(table.delta().version())
    snap = table.snapshot(version)
    if snap is not None:
        ids = snap.rows.column("entity_id").to_numpy(zero_copy_only=False)
        return ids, snap.rows.column("content_hash").to_numpy(zero_copy_only=False), snap.vector_file(), version
    frame = table.latest([], as_of=version)
    state = table.state(version)
    return frame.ids, np.array([state.get(e, (None,))[0] for e in frame.ids.tolist()], dtype=object), frame.vectors, version


def update_index(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    rebuild_share: float = 0.2,
    max_imbalance: float = 8.0,
) -> IndexResult:
    """Bring the index up to the table's latest state without a rebuild when that is sound.

    Adds entities that are new or whose content changed, removes replaced and deleted ones: into
    the index's delta file while it holds at most ``FOLD_SHARE`` of the rows (the index file is
    not rewritten), else folded into the index file. It rebuilds instead when more than
    ``rebuild_share`` of the vectors were removed since the build, when a fold leaves an IVF's
    largest list over ``max_imbalance`` x the mean, or for HNSW with removals.
    Only the files committed since the index's version are read when the table was only appended
    to since; otherwise (compaction, deletes) the full latest state is compared.
    """
    fraction("rebuild share", rebuild_share, example=0.2)
    if isinstance(max_imbalance, bool) or not isinstance(max_imbalance, (int, float)) or not 1 <= max_imbalance < float("inf"):
        raise InvalidArgumentError(f"max imbalance must be a number >= 1 (largest IVF list over the mean), e.g. 8. Got {max_imbalance!r} instead.")
    store = Store.of(store)
    table = store.resolve_table(view, encoder)
    with view_lock(table.meta.view, "index update", store=store, encoder_id=table.meta.encoder_id):  # one writer per table: see featurestore.locks
        return _update_index(store, table, encoder, rebuild_share, max_imbalance)


def _update_index(store: Store, table: FeatureTable, encoder: str | None, rebuild_share: float, max_imbalance: float) -> IndexResult:
    view = table.meta.view
    folder = index_dir(table, store=store)
    index = VectorIndex.load(folder, encoder_id=table.meta.encoder_id)  # memory-mapped where it can be: an update writes a delta
    started = time.perf_counter()
    changes = table.changes_since(index.info.table_version)
    if changes is None:
        changes = _changes_from_state(table, index)
    remove, add = _diff(index, changes)
    version = changes.version
    stale = (index.info.removed_since_build + len(remove)) / max(index.info.rows + len(add), 1)
    needs_rebuild = stale > rebuild_share or (remove and index.info.factory.startswith("HNSW"))
    if not needs_rebuild and (len(add) or remove):
        index.update(remove, changes.ids[add], changes.vectors[add], changes.hashes[add], table_version=version)
        if index.delta_share() > FOLD_SHARE or len(index.delta) > FOLD_ROWS:  # fold into the index file (one full write)
            needs_rebuild = not index.can_fold()
            if not needs_rebuild:
                index.fold()
                needs_rebuild = index.imbalance() > max_imbalance
        if not needs_rebuild:
            index.save(local_index_dir(table, store=store))
            publish_index(table, store=store)
    elif not needs_rebuild:
        index.info.table_version = version
        index.save_info(local_index_dir(table, store=store))  # the vectors are unchanged: rewriting the index file would cost a full write
        publish_index(table, store=store)
    if needs_rebuild:
        built = build_index(view, encoder, store=store, index_type=kind_of(index.info.factory),
                            memory_budget=index.info.memory_budget, target_recall=index.info.target_recall)
        return IndexResult(built.info, rebuilt=True, added=len(add), removed=len(remove), seconds=round(time.perf_counter() - started, 3))
    seconds = time.perf_counter() - started
    if len(add) or remove:
        _record(store, index.info, "update", len(add), len(remove), seconds)
    return IndexResult(index.info, rebuilt=False, added=len(add), removed=len(remove), seconds=round(seconds, 3))


def ensure_index(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    **build_options: Any,
) -> IndexResult:
    """Bring the view's index up to its table's latest state: :func:`build_index` (with
    ``build_options``: index_type, memory_budget, target_recall) when it has none, else
    :func:`update_index`, which rebuilds by itself when an update would not be sound.

    The refresh flow and the index flow both call it, so a project's view and ``featurestore
    index build`` / ``update`` keep one index the same way.
    """
    store = Store.of(store)
    if has_index(view, encoder, store=store):
        return update_index(view, encoder, store=store)
    return build_index(view, encoder, store=store, progress=progress, **build_options)


def _diff(index: VectorIndex, changes: Changes) -> tuple[list[str], np.ndarray]:
    """Entities to remove (tombstoned, or indexed with other content) and the rows of
    ``changes`` to add (not indexed, or with new content)."""
    rows = index.rows_of([*changes.ids.tolist(), *changes.removed])
    live, gone = rows[: len(changes.ids)], rows[len(changes.ids) :]
    fresh = [i for i, (h, row) in enumerate(zip(changes.hashes.tolist(), live)) if row is None or index.hashes[row] != h]
    replaced = [changes.ids[i] for i in fresh if live[i] is not None]
    dropped = [e for e, row in zip(changes.removed, gone) if row is not None]
    return replaced + dropped, np.array(fresh, dtype=np.int64)


def _changes_from_state(table: FeatureTable, index: VectorIndex) -> Changes:
    """The full comparison, for when the files added since the index's version do not tell the
    change: every live entity whose content differs from the index, and the indexed ones gone."""
    version = int(table.delta().version())
    state = table.state(version)
    indexed = dict(zip(index.entity_ids.tolist(), index.hashes.tolist()))
    add = [e for e, (h, _) in state.items() if indexed.get(e) != h]
    hashes = [state[e][0] for e in add]
    return Changes(
        ids=np.array(add, dtype=object),
        hashes=np.array(hashes, dtype=object),
        vectors=_vectors_by_hash(table, hashes),  # only the files holding new content are read
        removed=[e for e in indexed if e not in state],
        version=version,
    )


def _vectors_by_hash(table: FeatureTable, hashes: list[str]) -> np.ndarray:
    """``(len(hashes), dim) float32``: the stored vector of each content hash."""
    from featurestore.store import embeddings_to_numpy

    if not hashes:
        return np.zeros((0, table.meta.dim), np.float32)
    found = table.rows_with_hashes(set(hashes), ["embedding"])
    vectors = embeddings_to_numpy(found.column("embedding"), table.meta.dim)
    where = {h: i for i, h in enumerate(found.column("content_hash").to_pylist())}
    return vectors[[where[h] for h in hashes]]


def has_index(view: str, encoder: str | None = None, *, store: Store | str | None = None) -> bool:
    store = Store.of(store)
    return index_info(store.resolve_table(view, encoder), store=store) is not None


def index_info(table: FeatureTable, *, store: Store) -> dict[str, Any] | None:
    """What the view's index.json says (factory, rows, recall, table version ...), None without an index."""
    return _read_info(store, table.meta.view, table.meta.encoder_id)


def index_status(row: TableInfo, *, store: Store) -> dict[str, Any] | None:
    """How well the index of a catalog row (:meth:`Store.info`) covers its table: factory, rows
    indexed, coverage (rows indexed / live rows), recall@10, the table version it covers and how
    many versions it is behind; None without an index, ``{"error": ...}`` for an unreadable one."""
    try:
        info = _read_info(store, row.view, row.encoder_id)
    except StoreError as exc:
        return {"error": str(exc)}
    if info is None:
        return None
    return {
        "factory": info.get("factory"),
        "rows": info.get("rows"),
        "coverage": round(info.get("rows", 0) / row.rows, 4) if row.rows else None,
        "recall_at_10": info.get("recall_at_10"),
        "table_version": info.get("table_version"),
        "versions_behind": row.version - info.get("table_version", row.version),
    }


def _read_info(store: Store, view: str, encoder_id: str) -> dict[str, Any] | None:
    path, text = store.read_current(_relative(view, encoder_id), INFO_FILE)
    try:
        return json.loads(text) if text is not None else None
    except ValueError:
        raise StoreError(f"{path} cannot be read; rebuild the index with `featurestore index build`") from None


def load_index(view: str, encoder: str | None = None, *, store: Store | str | None = None) -> VectorIndex:
    store = Store.of(store)
    table = store.resolve_table(view, encoder)
    return VectorIndex.load(index_dir(table, store=store), encoder_id=table.meta.encoder_id)


def view_encoder(table: FeatureTable) -> BaseEncoder:
    """The encoder that wrote the view, rebuilt from its metadata; refuses one that now differs."""
    meta = table.meta
    return from_meta(meta.encoder_ref, meta.encoder_options, expect_id=meta.encoder_id, owner=f"view {meta.view!r}")
