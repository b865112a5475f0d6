"""A FAISS index over one table version: build, save, load, search (tuning: :mod:`featurestore.index.tuning`).

Files under ``<store>/indexes/<view>/<encoder_id>/``: ``index-<token>.faiss``, ``ids-<token>.parquet``
(FAISS int64 id -> entity_id of every live vector) and ``index.json`` (factory string, search
parameters, measured recall and latency, memory, build seconds, the table version covered,
encoder_id, metric); after updates also a delta file, the vectors added and ids removed since
the index file was written (see :mod:`featurestore.index.delta`). The data files carry a token
in their names and ``index.json`` lists them: replacing it commits a save.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore import settings
from featurestore.errors import SchemaMismatchError, StoreError
from featurestore.extras import require
from featurestore.index.choice import ADD_CHUNK, IndexType, choose_factory, kind_of, train_rows
from featurestore.index.delta import Delta, merge, selector_excluding
from featurestore.index.files import INDEX_FILES, INFO_FILE, TEMPORARY, check_header, checked_files, file_size, named_files
from featurestore.index.tuning import tune
from featurestore.params import fraction
from featurestore.vectors import l2_normalise, prepare


@dataclass
class IndexInfo:
    """What ``index.json`` holds."""

    view: str
    encoder_id: str
    metric: str
    dim: int
    rows: int
    factory: str
    params: dict[str, Any] = field(default_factory=dict)
    recall_at_10: float = 1.0
    latency_ms: float = 0.0
    memory_bytes: int = 0
    build_seconds: float = 0.0
    table_version: int = 0
    target_recall: float = 0.95
    removed_since_build: int = 0
    added_since_build: int = 0
    memory_budget: int | None = None  # bytes the build was given; loads keep the index in memory within it
    files: dict[str, str] = field(default_factory=dict)  # index, ids and delta: the files of this version of the index


class Rows(Protocol):
    """Vectors that can be read by row ranges and row numbers: a numpy array, or a file read a
    chunk at a time (``featurestore.store.snapshot.VectorFile``) so a build never holds them all."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> np.ndarray: ...


@functools.cache
def _faiss():
    """The faiss module, imported on first use (once: every search goes through it)."""
    return require("faiss", "index")


class VectorIndex:
    """A built or loaded FAISS index with its id map and info."""

    def __init__(
        self,
        index: Any,
        positions: np.ndarray,
        entity_ids: np.ndarray,
        hashes: np.ndarray,
        info: IndexInfo,
        delta: Delta | None = None,
        *,
        source: Path | None = None,
        mapped: bool = False,
    ) -> None:
        self.index = index  # what index.faiss holds (plus the delta: the live vectors)
        self.positions = np.asarray(positions, dtype=np.int64)  # sorted FAISS ids of the live vectors
        self.entity_ids = np.asarray(entity_ids, dtype=object)
        self.hashes = np.asarray(hashes, dtype=object)  # content hash of each indexed vector
        self.info = info
        self.delta = delta if delta is not None else Delta.empty(info.dim, info.metric)
        self.source = source  # the folder whose index.faiss holds self.index: a save there writes the delta only
        self.mapped = mapped  # self.index is memory-mapped read-only from source

    def __len__(self) -> int:
        return len(self.positions)

    def entity_at(self, positions: np.ndarray) -> list[str | None]:
        """The entity ids behind FAISS ids (None for -1 / unknown)."""
        flat = np.asarray(positions, dtype=np.int64).ravel()
        where = np.clip(np.searchsorted(self.positions, flat), 0, max(len(self.positions) - 1, 0))
        ok = (flat >= 0) & (len(self.positions) > 0) & (self.positions[where] == flat if len(self.positions) else False)
        return [self.entity_ids[w] if good else None for w, good in zip(where.tolist(), np.atleast_1d(ok).tolist())]

    def update(self, remove: list[str], add_ids: np.ndarray, add_vectors: np.ndarray, add_hashes: np.ndarray, *, table_version: int) -> None:
        """Remove entities and add new vectors, into the delta (the index file is left alone)."""
        if remove:
            if self.info.factory.startswith("HNSW"):
                raise StoreError("an HNSW index cannot remove vectors; rebuild it")
            gone = np.asarray(pc.is_in(pa.array(self.entity_ids, pa.string()), value_set=pa.array(remove, pa.string())), dtype=bool)
            self.delta.remove(self.positions[gone])
            self.positions, self.entity_ids, self.hashes = self.positions[~gone], self.entity_ids[~gone], self.hashes[~gone]
            self.info.removed_since_build += int(gone.sum())
        if len(add_ids):
            taken = [int(a[-1]) for a in (self.positions, self.delta.removed) if len(a)]  # never reuse an id the file still holds
            start = max(taken, default=-1) + 1
            new = np.arange(start, start + len(add_ids), dtype=np.int64)
            self.delta.add(new, prepare(add_vectors, self.info.metric))
            self.positions = np.concatenate([self.positions, new])
            self.entity_ids = np.concatenate([self.entity_ids, np.asarray(add_ids, dtype=object)])
            self.hashes = np.concatenate([self.hashes, np.asarray(add_hashes, dtype=object)])
            self.info.added_since_build += len(add_ids)
        self.info.rows = len(self.positions)
        self.info.table_version = table_version

    def delta_share(self) -> float:
        """The delta's size (added + removed) over the live rows."""
        return len(self.delta) / max(len(self.positions), 1)

    def fold(self) -> None:
        """Apply the delta to the index itself (read into memory first when it is memory-mapped);
        the next save writes the whole index file."""
        if not len(self.delta):
            return
        if not self.can_fold():
            raise StoreError(f"a {self.info.factory} index cannot take these changes in place; rebuild it")
        faiss = _faiss()
        if self.mapped and self.source is not None:  # read-only pages: take a writable copy
            self.index = faiss.read_index(str(self.source / self.info.files["index"]))
            self.apply(self.info.params)
            self.mapped = False
        if len(self.delta.removed):
            self.index.remove_ids(self.delta.removed)
        if len(self.delta.added):
            self.index.add_with_ids(self.delta.vectors, self.delta.added)
        self.delta = Delta.empty(self.info.dim, self.info.metric)
        self.source = None

    def rows_of(self, entity_ids: Sequence[str]) -> list[int | None]:
        """Each entity's row in the id map (None: not indexed), by an Arrow hash lookup: an update
        touches few entities and should not build a dict of all of them."""
        return pc.index_in(pa.array(entity_ids, pa.string()), value_set=pa.array(self.entity_ids, pa.string())).to_pylist()

    def imbalance(self) -> float:
        """Largest IVF list / mean list size (1.0 for other index types)."""
        faiss = _faiss()
        try:
            ivf = faiss.extract_index_ivf(self.index)
        except RuntimeError:
            return 1.0
        sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
        return float(sizes.max() / max(sizes.mean(), 1e-9)) if sizes.sum() else 1.0

    # ------------------------------------------------------------------ build
    @classmethod
    def build(
        cls,
        ids: np.ndarray,
        vectors: Rows,
        *,
        hashes: np.ndarray | None = None,
        view: str,
        encoder_id: str,
        metric: str,
        table_version: int,
        index_type: IndexType = "auto",
        memory_budget: int | None = None,
        target_recall: float = 0.95,
        seed: int = 0,
        train_seconds: float | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> "VectorIndex":
        """Choose, train, fill and tune an index over ``vectors`` (``(n, dim)``, read by chunks).
        ``progress(added, n)`` is called after each chunk goes in.

        Training stops with a :class:`StoreError` past ``train_seconds`` (default
        ``$FEATURESTORE_INDEX_TRAIN_SECONDS`` or 600): a build never hangs in FAISS.
        """
        faiss = _faiss()
        n, dim = vectors.shape
        if n == 0:
            raise StoreError(f"view {view!r} has no rows for {encoder_id}: nothing to index; materialize it first")
        fraction("target recall", target_recall, allow_zero=False, example=0.95)
        bound = settings.index_train_seconds(train_seconds)
        started = time.perf_counter()
        factory = choose_factory(n, dim, index_type=index_type, memory_budget=memory_budget)
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        index = faiss.index_factory(dim, f"IDMap2,{factory}" if factory.startswith("HNSW") else factory, faiss_metric)
        if not index.is_trained:
            rng = np.random.default_rng(seed)
            picks = np.sort(rng.choice(n, size=train_rows(n, kind_of(factory)), replace=False))
            sample = np.ascontiguousarray(vectors[picks], dtype=np.float32)  # fancy indexing copied it: normalised in place
            if metric == "cosine":
                l2_normalise(sample)
            _train(index, sample, factory, bound)
        if factory == "Flat":
            index = faiss.IndexIDMap2(index)
        # Vectors go in by chunks: memory holds the index and one normalised chunk, never a full copy.
        sequential = "Refine" in factory  # IndexRefine takes no ids: its own numbering is the same 0..n-1
        for start in range(0, n, ADD_CHUNK):
            stop = min(n, start + ADD_CHUNK)
            chunk = prepare(vectors[start:stop], metric)
            if sequential:
                index.add(chunk)
            else:
                index.add_with_ids(chunk, np.arange(start, stop, dtype=np.int64))
            if progress is not None:
                progress(stop, n)
        info = IndexInfo(view=view, encoder_id=encoder_id, metric=metric, dim=dim, rows=n, factory=factory,
                         table_version=table_version, target_recall=target_recall, memory_budget=memory_budget)
        hashes = np.asarray(hashes if hashes is not None else [None] * n, dtype=object)
        built = cls(index, np.arange(n, dtype=np.int64), np.asarray(ids, dtype=object), hashes, info)
        tune(built, vectors, target_recall, seed=seed)
        info.build_seconds = round(time.perf_counter() - started, 3)
        return built

    def apply(self, params: dict[str, Any]) -> None:
        """Set FAISS search parameters (``nprobe``, ``efSearch``, ``k_factor``) on the index."""
        faiss = _faiss()
        inner = faiss.downcast_index(self.index.index) if isinstance(self.index, faiss.IndexIDMap2) else self.index
        if "nprobe" in params:
            faiss.extract_index_ivf(self.index).nprobe = params["nprobe"]
        if "efSearch" in params:
            faiss.downcast_index(inner).hnsw.efSearch = params["efSearch"]
        if "k_factor" in params:
            faiss.downcast_index(self.index).k_factor = params["k_factor"]

    # ----------------------------------------------------------------- search
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, faiss_ids)`` both ``(n_queries, k)``; :meth:`entity_at` names them (-1: none)."""
        if queries.ndim != 2 or queries.shape[1] != self.info.dim:
            got = queries.shape[-1] if queries.ndim else 0
            raise SchemaMismatchError(f"query vectors must have dimension {self.info.dim} for {self.info.encoder_id}. Got {got} instead.")
        q = prepare(queries, self.info.metric)
        if not len(self.delta):
            return self.index.search(q, k)
        selector = selector_excluding(self.delta.removed) if len(self.delta.removed) else None
        found = self.index.search(q, k, params=self._params(selector, k)) if selector is not None else self.index.search(q, k)
        return merge(found, self.delta.search(q, k), k, self.info.metric)

    def search_subset(self, queries: np.ndarray, k: int, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Search only among the given FAISS ids (an ID selector), with the tuned parameters."""
        faiss = _faiss()
        positions = np.asarray(positions, dtype=np.int64)
        selector = faiss.IDSelectorBatch(positions)
        q = prepare(queries, self.info.metric)
        found = self.index.search(q, k, params=self._params(selector, k))
        return merge(found, self.delta.search(q, k, positions), k, self.info.metric) if len(self.delta.added) else found

    def can_fold(self) -> bool:
        """Whether the delta can go into the index itself (IndexRefine adds no ids and removes none)."""
        return "Refine" not in self.info.factory and not (self.info.factory.startswith("HNSW") and len(self.delta.removed))

    def _params(self, selector: Any, k: int) -> Any:
        """Search parameters with an ID selector and the tuned nprobe / efSearch / k_factor."""
        faiss = _faiss()
        params = self.info.params
        if "Refine" in self.info.factory:  # the IVF-PQ base filters; the refinement re-ranks what it found
            base = faiss.SearchParametersIVF(sel=selector, nprobe=params.get("nprobe", 1))
            refine = faiss.IndexRefineSearchParameters()
            refine.k_factor = float(params.get("k_factor", 1))
            refine.base_index_params = base
            refine.referenced = base  # the SWIG wrapper does not own it
            return refine
        if self.info.factory.startswith("IVF"):
            return faiss.SearchParametersIVF(sel=selector, nprobe=params.get("nprobe", 1))
        if self.info.factory.startswith("HNSW"):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(params.get("efSearch", 16), k))
        return faiss.SearchParameters(sel=selector)

    # --------------------------------------------------------------- storage
    def save(self, folder: Path) -> None:
        """Write new files under new names, then ``index.json`` naming them: the one commit point.

        A process killed before ``index.json`` is replaced leaves the previous, consistent set in
        force; the next save removes what it wrote (files under new names, temporary files). An
        index loaded from ``folder`` and updated since writes its id map and delta, not the index
        file again. Files named by neither the new nor the previous ``index.json`` are
        deleted afterwards (the previous set stays for readers that opened it). ``memory_bytes``
        is the index file's size: what loading it into memory takes.
        """
        faiss = _faiss()
        folder.mkdir(parents=True, exist_ok=True)
        previous = named_files(folder)
        token = uuid.uuid4().hex[:12]
        files = dict(self.info.files) if self.info.files else {}
        same = self.source is not None and self.source.resolve() == folder.resolve() and (folder / files.get("index", "")).is_file()
        if not same:
            self.fold()
            files["index"] = f"index-{token}.faiss"
            tmp = folder / f".{files['index']}.tmp"
            faiss.write_index(self.index, str(tmp))
            self.info.memory_bytes = os.path.getsize(tmp)
            os.replace(tmp, folder / files["index"])
            self.source = folder
        files["ids"] = f"ids-{token}.parquet"
        ids = pa.table({
            "position": pa.array(self.positions, pa.int64()),
            "entity_id": pa.array(self.entity_ids.tolist(), pa.string()),
            "content_hash": pa.array(self.hashes.tolist(), pa.string()),
        })
        pq.write_table(ids, folder / f".{files['ids']}.tmp")
        os.replace(folder / f".{files['ids']}.tmp", folder / files["ids"])
        files.pop("delta", None)
        if len(self.delta):
            files["delta"] = f"delta-{token}.parquet"
            self.delta.save(folder / files["delta"])
        self.info.files = files
        self.save_info(folder)
        for path in folder.iterdir():  # saves run under the view's lock: a temporary file here is a killed save's
            if (INDEX_FILES.match(path.name) and path.name not in set(files.values()) | previous) or TEMPORARY.match(path.name):
                path.unlink(missing_ok=True)

    def save_info(self, folder: Path) -> None:
        """Write ``index.json`` alone (temporary name, then renamed): enough when only the covered
        version moved."""
        (folder / f".{INFO_FILE}.tmp").write_text(json.dumps(asdict(self.info), indent=2))
        os.replace(folder / f".{INFO_FILE}.tmp", folder / INFO_FILE)

    @classmethod
    def load(cls, folder: Path, *, encoder_id: str | None = None) -> "VectorIndex":
        """Load; refuse an index of another encoder or a damaged file.

        The index is read into memory when it fits the memory budget it was
        built under: a memory-mapped index pages in during its first searches, which makes their
        speed depend on the page cache. Without a budget, or beyond it, it is memory-mapped
        where FAISS allows.
        """
        faiss = _faiss()
        rebuild = "rebuild it with `featurestore index build`"
        meta = folder / INFO_FILE
        if not meta.is_file():
            raise StoreError(f"no index at {folder}; build one with `featurestore index build`")
        try:
            info = IndexInfo(**json.loads(meta.read_text()))
        except (ValueError, TypeError, RecursionError) as exc:
            raise StoreError(f"{meta} cannot be read ({str(exc)[:160]}); {rebuild}") from None
        if encoder_id is not None and info.encoder_id != encoder_id:
            raise SchemaMismatchError(f"the index at {folder} was built for {info.encoder_id}, not {encoder_id}; {rebuild}")
        files = checked_files(folder, info.files, rebuild)
        base = folder / files["index"]
        in_memory = info.memory_budget is not None and file_size(base) <= info.memory_budget
        mapped = False
        check_header(base, rebuild)
        try:
            if in_memory:
                raise RuntimeError("read into memory")
            index = faiss.read_index(str(base), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
            mapped = True
        except RuntimeError:
            try:
                index = faiss.read_index(str(base))
            except RuntimeError as exc:
                raise StoreError(f"the index file {base} is damaged ({str(exc).splitlines()[0][:120]}); {rebuild}") from None
        try:
            idmap = pq.read_table(folder / files["ids"])
        except (OSError, pa.ArrowInvalid) as exc:
            raise StoreError(f"the id map {folder / files['ids']} is damaged ({exc}); {rebuild}") from None
        try:
            delta = Delta.load(folder / files["delta"], info.dim, info.metric) if "delta" in files else Delta.empty(info.dim, info.metric)
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"the update file {folder / files['delta']} is damaged ({exc}); {rebuild}") from None
        live = index.ntotal - len(delta.removed) + len(delta.added)
        if live != idmap.num_rows or index.d != info.dim:
            raise StoreError(f"the index at {folder} holds {live} vectors of dimension {index.d} but its id map has {idmap.num_rows}; {rebuild}")
        try:
            positions = idmap.column("position").to_numpy()
            entity_ids = idmap.column("entity_id").to_numpy(zero_copy_only=False)
            hashes = idmap.column("content_hash").to_numpy(zero_copy_only=False)
        except (KeyError, pa.ArrowInvalid) as exc:
            raise StoreError(f"the id map {folder / files['ids']} is not one ({exc}); {rebuild}") from None
        loaded = cls(index, positions, entity_ids, hashes, info, delta, source=folder, mapped=mapped)
        loaded.apply(info.params)
        return loaded


_TRAINING = threading.Lock()  # FAISS's interrupt callback (the time bound) is one per process


def _train(index: Any, sample: np.ndarray, factory: str, seconds: float) -> None:
    """Train ``index`` on ``sample`` within ``seconds``, else raise a :class:`StoreError` naming the bound.

    FAISS checks its interrupt callback between k-means iterations; ``TimeoutGuard`` makes that
    callback a deadline. The PQ's polysemous training (a code reordering only polysemous
    search uses, which this index never does) is switched off: it took minutes on any table.
    """
    faiss = _faiss()
    if "PQ" in factory:
        faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    with _TRAINING:
        started = time.perf_counter()
        try:
            with faiss.TimeoutGuard(seconds):
                index.train(sample)
        except RuntimeError as exc:
            if "interrupted" not in str(exc):
                raise StoreError(f"FAISS could not train a {factory} index on {len(sample)} vectors: {str(exc).splitlines()[-1][:200]}") from None
        elapsed = time.perf_counter() - started
    if elapsed > seconds or not index.is_trained:
        raise StoreError(
            f"training the {factory} index on {len(sample):,} vectors passed the bound of {seconds:g} s "
            f"(stopped after {elapsed:.1f} s); nothing was written. Use `index_type='flat'` (it needs no training) "
            "or raise FEATURESTORE_INDEX_TRAIN_SECONDS"
        )
