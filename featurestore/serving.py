"""The warm search handle: one per (store, view, encoder) and process, the one path of every query.

``featurestore.search``, ``featurestore search`` and the HTTP service (``featurestore api``) all
answer through a :class:`Searcher`. It loads the FAISS index, its id map, the latest state's
kept columns and the view's encoder once, then on each call checks cheaply whether a newer
index generation (``index.json`` replaced) or table version (one incremental read of the Delta
log) exists and, if so, loads it beside the one in use and swaps: a query reads the state once,
so a query in flight finishes on the old generation, the next sees the new one, and none sees
a mix. Loading happens in the calling thread while the others keep answering from the old state.

Handles live in a per-process, least-recently-used cache (:func:`searcher`) capped at
``max_views`` so a service over many views keeps bounded memory.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from featurestore.errors import EncoderError, NotFoundError, StoreError
from featurestore.hits import HitTables

if TYPE_CHECKING:  # heavy at import time; loaded inside the functions that need them
    from featurestore.encoders import BaseEncoder
    from featurestore.encoders.base import EncodeResult
    from featurestore.index.vector_index import VectorIndex
    from featurestore.store import FeatureFrame, FeatureTable, Store

__all__ = ["Generation", "SearchResults", "Searcher", "clear_searchers", "loaded_searcher", "loaded_searchers", "searcher"]

DEFAULT_MAX_VIEWS = 8
ENCODE_LOCK = threading.Lock()  # one forward pass at a time in this process: HF tokenizers fail when shared by threads


@dataclass(frozen=True)
class Generation:
    """What one answer was computed from: the index save (``index``: the token of its files),
    the table version the index covers, and the table version of the kept columns."""

    index: str
    index_version: int
    table_version: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SearchResults(list):
    """A list (one list of hits per query, best first) that also says which :class:`Generation`
    answered, so a caller can tell that every hit of one call came from one generation."""

    __slots__ = ("generation",)  # no per-result __dict__ to build
    generation: Generation

    @classmethod
    def of(cls, hits: list[list[dict[str, Any]]], generation: Generation) -> "SearchResults":
        results = cls(hits)
        results.generation = generation
        return results


@dataclass(frozen=True)
class _State:
    """One generation, read together and swapped as a whole."""

    generation: Generation
    index: "VectorIndex | None"  # None: the view has no index yet (lookups work, searches are refused)
    frame: "FeatureFrame"
    index_stamp: Any  # what the cheap check compares: index.json's identity (local) or contents (remote)
    hits: HitTables  # the index's id map, frame rows and kept columns, in the index's id order


class Searcher:
    """Warm handle over one view's table: index + id map + latest kept columns + encoder.

    Parameters
    ----------
    store, table : where the view lives (``Store.resolve_table`` gives the table).
    check_every : seconds between freshness checks (default
        :func:`featurestore.settings.search_check_seconds`: 0.01 locally, where a check is a
        ``stat`` of ``index.json`` and of the Delta log folder, ~10 us; 1 over a bucket, where it
        costs requests); 0 checks on every call. A generation published by another process is
        served from the first call that starts ``check_every`` after it.
    """

    def __init__(self, store: "Store", table: "FeatureTable", *, check_every: float | None = None) -> None:
        if table.meta.granularity == "token":
            raise StoreError(f"view {table.meta.view!r} holds token rows (one per word); search and lookups serve sentence and image views")
        self.store = store
        self.table = table
        self.view = table.meta.view
        self.encoder_id = table.meta.encoder_id
        from featurestore import settings

        self.check_every = check_every if check_every is not None else settings.search_check_seconds(remote=store.remote is not None)
        self._lock = threading.Lock()  # one loader at a time; the others answer from the current state
        self._encoder: BaseEncoder | None = None
        self._delta: Any = None
        self._log_seen: tuple[int, int] | None = None
        self._log_read = 0.0
        self._checked = 0.0
        self._claimed = 0.0  # when a caller last took the freshness check on itself (claim_check)
        self._state: _State | None = None
        self._as_of: OrderedDict[str, "FeatureFrame"] = OrderedDict()
        from featurestore.index.lifecycle import index_json

        # what the local check stats, as strings: building the paths per call would cost more than the stats
        self._index_json = str(index_json(table, store=store))
        self._log_dir = os.path.join(table.uri, "_delta_log")
        self.swaps = 0  # how many times a newer generation replaced the one served
        self.refresh()

    # ---------------------------------------------------------------- freshness
    @property
    def generation(self) -> Generation:
        return self._current().generation

    @property
    def index(self) -> "VectorIndex":
        """The vector index of the generation in force, after the freshness check (its FAISS
        index is ``.index``); :class:`NotFoundError` when the view has no index yet."""
        return self._index_of(self._current())

    def served_generation(self) -> Generation | None:
        """The generation in force now, without a freshness check (for metrics)."""
        state = self._state
        return state.generation if state is not None else None

    def refresh(self, *, force: bool = False) -> bool:
        """Check for a newer index generation or table version and swap to it; True when swapped.

        Never blocks behind another thread's load: that thread swaps when done, and this call
        returns False (its caller answers from the state in force).
        """
        if self._state is not None and not force and time.monotonic() - self._checked < self.check_every:
            return False
        if not self._lock.acquire(blocking=self._state is None):
            return False
        try:
            self._checked = time.monotonic()
            state = self._state
            try:
                stamp = self._index_stamp()
                version = self._table_version()
            except StoreError:
                if state is None or not self.store.remote:
                    raise
                return False  # the bucket cannot be reached now: keep serving the generation loaded
            if state is not None and state.index_stamp == stamp and state.generation.table_version == version:
                return False
            try:
                self._state = self._load(stamp, version, state)
            except StoreError:
                if state is None:
                    raise
                self._checked = 0.0  # e.g. the files named by a just-read index.json were already replaced: retry next call
                return False
            self.swaps += state is not None
            return True
        finally:
            self._lock.release()

    def claim_check(self) -> bool:
        """Whether the caller is to run the freshness check (and may load a newer generation):
        True for one caller per ``check_every``, False for the others meanwhile. A caller that must
        not wait on a load, such as the service's event loop, answers with ``check=False`` on
        False and hands the call, checked, to a thread on True; the requests that arrive while
        that thread waits for its turn keep answering from the generation in force (were each of
        them sent to a thread too, a burst of hand-offs would cost more than their searches)."""
        if self._state is None:
            return True
        now = time.monotonic()
        if now - self._checked < self.check_every or now - self._claimed < self.check_every:
            return False
        self._claimed = now
        return True

    def _current(self, check: bool = True) -> _State:
        if check or self._state is None:
            self.refresh()
        assert self._state is not None  # set by the first refresh, which blocks
        return self._state

    def _index_stamp(self) -> Any:
        """index.json's identity locally (replaced on every save), what it says in a bucket; None: no index."""
        if self.store.remote:
            from featurestore.index.lifecycle import index_info

            return index_info(self.table, store=self.store)
        try:
            st = os.stat(self._index_json)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _index_of(self, state: _State) -> "VectorIndex":
        if state.index is None:
            from featurestore.index.lifecycle import index_dir

            folder = index_dir(self.table, store=self.store, fetch=False)
            raise NotFoundError(f"no index at {folder}; build one with `featurestore index build`")
        return state.index

    def _table_version(self) -> int:
        """The newest table version: the Delta log read incrementally from the last version seen.

        Locally the log is read only when its folder changed (a commit adds a file, which moves
        the folder's mtime: one stat, ~30 us, where a read of the log costs ~0.2-1.5 ms), and at
        least once a second whatever the folder says. The stamp is taken before the read, so a
        commit landing during it is seen by the next call.
        """
        from deltalake.exceptions import DeltaError

        log = self._log_stamp()
        if self._delta is not None and log is not None and log == self._log_seen and time.monotonic() - self._log_read < 1.0:
            return int(self._delta.version())
        if self._delta is not None:
            try:
                self._delta.update_incremental()
                self._log_seen, self._log_read = log, time.monotonic()
                return int(self._delta.version())
            except (DeltaError, OSError):
                self._delta = None  # the log cannot be followed (table replaced, bucket unreachable): open it again
        self._delta = self.table.delta()  # a StoreError when the table is gone
        self._log_seen, self._log_read = log, time.monotonic()
        return int(self._delta.version())

    def _log_stamp(self) -> tuple[int, int] | None:
        """The local Delta log folder's (inode, mtime_ns); None for a remote table or a missing folder."""
        if self.store.remote:
            return None
        try:
            st = os.stat(self._log_dir)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns)

    def _load(self, stamp: Any, version: int, old: _State | None) -> _State:
        """The index and the latest frame read together; the parts that did not change are kept."""
        from featurestore.index.lifecycle import index_dir
        from featurestore.index.vector_index import VectorIndex

        if old is not None and old.index_stamp == stamp:
            index = old.index
        elif stamp is None:
            index = None
        else:
            index = VectorIndex.load(index_dir(self.table, store=self.store), encoder_id=self.encoder_id)
        if old is not None and old.generation.table_version == version:
            frame = old.frame
        else:
            frame = self.table.latest()
            frame.prepare_lookups()  # the id map and the kept columns' values, once per generation
        files = (index.info.files or {}) if index is not None else {}
        token = files.get("ids", "ids.parquet").removeprefix("ids-").removesuffix(".parquet") if index is not None else ""
        generation = Generation(index=token, index_version=index.info.table_version if index is not None else -1, table_version=frame.version)
        return _State(generation=generation, index=index, frame=frame, index_stamp=stamp, hits=HitTables.of(index, frame))

    # ---------------------------------------------------------------- encoder
    def encoder(self) -> "BaseEncoder":
        """The view's own encoder, rebuilt once from the table's metadata (weights loaded)."""
        from featurestore.index.lifecycle import view_encoder

        if self._encoder is None:
            with ENCODE_LOCK:
                if self._encoder is None:
                    enc = view_encoder(self.table)
                    enc.load()
                    self._encoder = enc
        return self._encoder

    def embed(self, inputs: Sequence[str], *, modality: str | None = None) -> "EncodeResult":
        """Encode raw inputs (texts, or image paths) with the view's encoder: the same
        ``encoder_id`` and the same vectors as materialize writes. ``modality`` (text or image),
        when given, must be the encoder's."""
        enc = self.encoder()
        if modality is not None and enc.modality != modality:
            article = "an" if enc.modality == "image" else "a"
            raise EncoderError(f"view {self.view!r} holds {enc.modality} vectors; query it with {article} {enc.modality}, not {modality}")
        with ENCODE_LOCK:
            return enc.encode_with_stats(list(inputs))

    # ---------------------------------------------------------------- queries
    def search(
        self,
        *,
        texts: Sequence[str] | None = None,
        images: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
        vectors: np.ndarray | None = None,
        k: int = 10,
        where: str | None = None,
        exact_below: int = 20_000,
        check: bool = True,
    ) -> SearchResults:
        """The ``k`` nearest stored entities of each query with their kept columns; see
        :func:`featurestore.index.queries.search` for the arguments. Every hit comes from the
        generation in ``result.generation``. ``check=False``: answer from the generation in
        force, without the freshness check (see :meth:`claim_check`)."""
        check_query, query_vectors, check_vectors, describe_query, filtered_search = _query_tools()
        kind = check_query(texts=texts, images=images, ids=ids, vectors=vectors, k=k, exact_below=exact_below)
        state = self._state  # read once: this call sees one generation, whatever swaps meanwhile
        if state is None or (check and time.monotonic() - self._checked >= self.check_every):  # refresh()'s own test, inline: a warm query pays no call for it
            state = self._current(check)
        index, frame = state.index if state.index is not None else self._index_of(state), state.frame
        meta = self.table.meta
        if ids is not None:
            rows = frame.rows_of(list(ids))
            unknown = [e for e, r in zip(ids, rows.tolist()) if r < 0]
            if unknown:
                raise NotFoundError(f"id(s) {', '.join(repr(e) for e in unknown[:5])} are not in view {self.view!r}")
            queries = frame.vectors[rows]
        elif vectors is not None:
            queries = query_vectors(vectors, meta.dim, meta.encoder_id)
        else:
            given = list(images if images is not None else texts or [])
            result = self.embed(given, modality="image" if images is not None else "text")
            failed = [i for i, e in enumerate(result.errors or []) if e]
            if failed:
                named = describe_query(kind, given, failed[0], len(given))
                raise EncoderError(f"cannot encode query {named}: {result.errors[failed[0]]}")  # type: ignore[index]
            queries = result.vectors
        check_vectors(queries, meta.metric, kind, None if kind == "vectors" else texts if kind == "texts" else images if kind == "images" else ids, encoder_id=meta.encoder_id)
        if where is not None:
            return SearchResults.of(filtered_search(index, frame, queries, k, where, exact_below), state.generation)
        scores, found = index.search(queries, min(k, len(index)))
        return SearchResults.of(state.hits.records(scores, found), state.generation)

    def features(self, ids: Sequence[str], *, as_of: int | str | None = None, check: bool = True) -> dict[str, Any]:
        """Online lookup: each known entity's stored vector and kept columns in the latest state
        (or ``as_of`` a table version or time); the ids not there are listed in ``unknown``, not
        dropped. ``vectors`` is ``(len(found), dim) float32`` in the order of ``found``.
        ``check=False``: the latest state in force, without the freshness check."""
        if as_of is None:
            state = self._current(check)
            frame, generation = state.frame, state.generation.to_dict()
        else:
            frame, generation = self._frame_as_of(as_of), None
        wanted = list(ids)
        rows = frame.rows_of(wanted)
        found = [(e, r) for e, r in zip(wanted, rows.tolist()) if r >= 0]
        taken = np.array([r for _, r in found], dtype=np.int64)
        return {
            "found": [{"entity_id": e, **extra} for (e, _), extra in zip(found, frame.kept(taken))],
            "vectors": np.asarray(frame.vectors[taken], dtype=np.float32) if len(taken) else np.zeros((0, self.table.meta.dim), np.float32),
            "unknown": [e for e, r in zip(wanted, rows.tolist()) if r < 0],
            "table_version": frame.version,
            "encoder_id": self.encoder_id,
            "generation": generation,
        }

    def _frame_as_of(self, as_of: int | str) -> "FeatureFrame":
        """A past state, kept for the next lookups of the same ``as_of`` (the four newest asked)."""
        key = str(as_of)
        if key not in self._as_of:
            frame = self.table.latest(None, as_of=as_of)
            frame.keep_row_map()
            self._as_of[key] = frame
            while len(self._as_of) > 4:
                self._as_of.popitem(last=False)
        self._as_of.move_to_end(key)
        return self._as_of[key]

    def describe(self) -> dict[str, Any]:
        """What this handle serves, for ``/v1/views`` and the metrics."""
        state = self._current()
        return {
            "view": self.view,
            "encoder_id": self.encoder_id,
            "encoder": self.table.meta.encoder_name,
            "modality": self.table.meta.modality,
            "dim": self.table.meta.dim,
            "rows": len(state.frame),
            "indexed": len(state.index) if state.index is not None else 0,
            "factory": state.index.info.factory if state.index is not None else None,
            "columns": state.frame.columns.column_names,
            "generation": state.generation.to_dict(),
            "swaps": self.swaps,
        }


@functools.cache
def _query_tools() -> tuple[Any, ...]:
    """The library's query checks and filtered search, imported once (importing
    :mod:`featurestore.index` loads FAISS, which ``import featurestore`` must not)."""
    from featurestore.index.queries import check_query, check_vectors, describe_query, filtered_search, query_vectors

    return check_query, query_vectors, check_vectors, describe_query, filtered_search


# -------------------------------------------------------------------- per-process cache

_CACHE: OrderedDict[tuple[str, str], Searcher] = OrderedDict()  # (local folder, table uri): one handle per table
_NAMES: dict[tuple[str, str, str, str | None], tuple[str, str]] = {}  # (root, local folder, view, encoder) -> _CACHE key
_CACHE_LOCK = threading.Lock()


def searcher(view: str, encoder: str | None = None, *, store: "Store | str | None" = None, max_views: int = DEFAULT_MAX_VIEWS) -> Searcher:
    """This process's warm handle of ``view`` (loaded on first use); the least recently used
    handle is dropped when more than ``max_views`` are loaded. Handles are per table and per
    local folder: two work folders over one bucket (two "machines") never share one."""
    from featurestore.store import Store

    store = Store.of(store)
    handle = loaded_searcher(view, encoder, store=store)
    if handle is not None:
        return handle
    table = store.resolve_table(view, encoder)
    key = (str(store.path), table.uri)
    with _CACHE_LOCK:
        handle = _CACHE.get(key)
    if handle is None:
        handle = Searcher(store, table)  # loads outside the cache lock: other views keep answering
    with _CACHE_LOCK:
        handle = _CACHE.setdefault(key, handle)
        _NAMES[(store.root, str(store.path), view, encoder)] = key
        _CACHE.move_to_end(key)
        while len(_CACHE) > max(max_views, 1):
            _CACHE.popitem(last=False)
    return handle


def loaded_searcher(view: str, encoder: str | None = None, *, store: "Store") -> Searcher | None:
    """This process's handle of ``view`` when one is loaded (a cache lookup, nothing read); else None."""
    with _CACHE_LOCK:
        key = _NAMES.get((store.root, str(store.path), view, encoder))
        handle = _CACHE.get(key) if key is not None else None
        if handle is not None:
            _CACHE.move_to_end(key)
        return handle


def loaded_searchers() -> list[Searcher]:
    """The handles loaded in this process, least recently used first."""
    with _CACHE_LOCK:
        return list(_CACHE.values())


def clear_searchers() -> None:
    """Drop every loaded handle (their memory goes once no query holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _NAMES.clear()

