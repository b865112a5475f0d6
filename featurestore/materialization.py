"""Incremental materialization: plan the diff, encode shards, commit, summarise.

Three library calls that the Prefect flow composes (and ``materialize`` runs in-process):

1. :func:`plan` streams the source once, hashes every record, compares ``(entity_id,
   content_hash)`` with the table's latest state and writes the rows to encode into Parquet
   shards under ``<store>/_staging``. Every user error (bad file, column, duplicate id) surfaces
   here, before anything is committed.
   A record whose kept columns (e.g. its label) changed is re-written too.
2. :func:`encode_shard` encodes one shard (each distinct text once) and appends it to the Delta
   table in one commit, tagged with an idempotent transaction id, so a retried shard never
   writes twice and a killed run loses at most the shard in flight.
3. :func:`finish` writes tombstones (only for ``full_sync``), records the run and removes the
   staging folder.

Tasks pass the plan's path and a shard index, never arrays.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.encoders import BaseEncoder, EncodeResult, get_encoder
from featurestore.errors import EncoderError, SourceError
from featurestore.sources import Source, to_dict
from featurestore.store import Store, TableMeta, vectors_to_binary
from featurestore.store.schema import TIMESTAMP

OnDuplicate = Literal["error", "last"]
MAX_FAILURES_LISTED = 100
_APP_ID = "featurestore-materialize"


@dataclass
class Plan:
    """What a run will do; saved as ``plan.json`` in its staging folder."""

    run_id: str
    store: str
    view: str
    encoder: str
    encoder_options: dict[str, Any]
    encoder_id: str
    meta: dict[str, Any]
    source: dict[str, Any]
    staging: str
    shards: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    tombstones: list[str] = field(default_factory=list)
    drop_lines: list[int] = field(default_factory=list)
    rows_seen: int = 0
    unchanged: int = 0
    failed: int = 0
    duplicates: int = 0
    to_encode: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)
    base_version: int | None = None
    started_at: float = 0.0
    run_time: str = ""

    @property
    def path(self) -> Path:
        return Path(self.staging) / "plan.json"

    def save(self) -> str:
        self.path.write_text(json.dumps(asdict(self)))
        return str(self.path)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        return cls(**json.loads(Path(path).read_text()))


def _staging_dir(store: Store, view: str, encoder_id: str, run_id: str) -> Path:
    return store.path / "_staging" / view / encoder_id / run_id


def _clear_stale_staging(folder: Path, max_age_s: float = 6 * 3600) -> None:
    """Remove staging folders left by killed runs (the diff re-plans their rows anyway)."""
    if not folder.is_dir():
        return
    now = time.time()
    for old in folder.iterdir():
        if old.is_dir() and now - old.stat().st_mtime > max_age_s:
            shutil.rmtree(old, ignore_errors=True)


def plan(
    source: Source,
    view: str,
    encoder: str,
    *,
    store: Store | str | None = None,
    encoder_options: dict[str, Any] | None = None,
    full_sync: bool = False,
    on_duplicate: OnDuplicate = "error",
    strict: bool = False,
    shard_size: int = 4096,
) -> Plan:
    """Scan the source against the table's latest state and stage the rows to encode.

    Raises a :class:`FeatureStoreError` subclass, with the store untouched, on any user error.
    """
    if on_duplicate not in ("error", "last"):
        raise SourceError(f"on_duplicate must be 'error' or 'last'. Got {on_duplicate!r} instead.")
    if shard_size <= 0:
        raise SourceError(f"shard_size must be a positive int. Got {shard_size} instead.")
    store = store if isinstance(store, Store) else Store(store)
    options = dict(encoder_options or {})
    enc = get_encoder(encoder, **options)
    meta = TableMeta(
        view=view,
        encoder_id=enc.encoder_id,
        encoder_name=enc.name,
        encoder_spec=enc.spec,
        dim=enc.dim,
        metric=enc.metric,
        modality=enc.modality,
        granularity="sentence",
    )
    table = store.table(view, enc.encoder_id)
    table.check_compatible(meta)
    created = store.ensure_writable()
    state = table.state()
    run_id = uuid.uuid4().hex[:12]
    staging = _staging_dir(store, view, enc.encoder_id, run_id)
    _clear_stale_staging(staging.parent)
    now = datetime.now(timezone.utc)
    p = Plan(
        run_id=run_id,
        store=store.root,
        view=view,
        encoder=encoder,
        encoder_options=options,
        encoder_id=enc.encoder_id,
        meta=asdict(meta),
        source=to_dict(source),
        staging=str(staging),
        base_version=table.version(),
        started_at=time.time(),
        run_time=now.isoformat(),
    )
    try:
        staging.mkdir(parents=True, exist_ok=True)
        _stage(p, source, state, full_sync=full_sync, on_duplicate=on_duplicate, strict=strict, shard_size=shard_size)
        p.save()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty_parents(staging.parent, store.path)
        if created is not None:  # the store did not exist before this run: leave no trace
            shutil.rmtree(created, ignore_errors=True)
        raise
    return p


def _stage(
    p: Plan,
    source: Source,
    state: dict[str, tuple[str, str | None]],
    *,
    full_sync: bool,
    on_duplicate: OnDuplicate,
    strict: bool,
    shard_size: int,
) -> None:
    seen: dict[str, tuple[int, str, tuple, bool]] = {}  # id -> (line, hash, kept, staged)
    conflicts: list[str] = []
    drop: set[int] = set()
    keep_cols = list(source.keep)
    # Rows with a text not stored yet go to shards (encoded); rows whose text is already stored
    # or staged go to copy batches (the stored vector is reused, no forward pass).
    known = {digest for digest, _ in state.values()}
    buffers = {"shard": _empty_buffer(source.keep), "copy": _empty_buffer(source.keep)}
    targets = {"shard": p.shards, "copy": p.copies}

    def flush(kind: str) -> None:
        buffer = buffers[kind]
        if not buffer["line"]:
            return
        path = Path(p.staging) / f"{kind}-{len(targets[kind]):05d}.parquet"
        pq.write_table(_buffer_table(buffer, keep_cols), path)
        targets[kind].append(str(path))
        for values in buffer.values():
            values.clear()

    for batch in source.batches():
        for i in range(len(batch)):
            line, entity, digest = batch.line[i], batch.entity_id[i], batch.content_hash[i]
            p.rows_seen += 1
            reason = batch.reason[i]
            if reason is not None:
                if strict:
                    raise SourceError(f"{source.path}: line {line}: {reason} (--strict makes this fatal)")
                p.failed += 1
                if len(p.failures) < MAX_FAILURES_LISTED:
                    p.failures.append({"line": line, "entity_id": entity, "reason": reason})
                continue
            kept = tuple(None if batch.keep[c][i] is None else str(batch.keep[c][i]) for c in keep_cols)
            previous = seen.get(entity)
            if previous is not None:
                p.duplicates += 1
                if previous[1] == digest and previous[2] == kept:
                    continue  # the same record twice: one entity, nothing to decide
                if on_duplicate == "error":
                    if len(conflicts) < 5:
                        conflicts.append(f"{entity!r} (lines {previous[0]} and {line})")
                    continue
                drop.add(previous[0])  # last wins: forget the earlier record
                if previous[3]:
                    p.to_encode -= 1
                else:
                    p.unchanged -= 1
            attrs = attrs_hash(kept)
            staged = state.get(entity) != (digest, attrs)
            seen[entity] = (line, digest, kept, staged)
            if not staged:
                p.unchanged += 1
                continue
            kind = "copy" if digest in known else "shard"
            known.add(digest)
            buffer = buffers[kind]
            buffer["line"].append(line)
            buffer["entity_id"].append(entity)
            buffer["content"].append(batch.content[i])
            if batch.tokens is not None:
                buffer["tokens"].append(batch.tokens[i])
            buffer["content_hash"].append(digest)
            buffer["attrs_hash"].append(attrs)
            buffer["event_timestamp"].append(batch.event_timestamp[i])
            for c, value in zip(keep_cols, kept):
                buffer[c].append(value)
            p.to_encode += 1
            if len(buffer["line"]) >= shard_size:
                flush(kind)
    if conflicts:
        raise SourceError(
            f"{source.path}: duplicate ids with different content: {', '.join(conflicts)}"
            f"{' ...' if p.duplicates > len(conflicts) else ''}; make ids unique or pass --on-duplicate last"
        )
    flush("shard")
    flush("copy")
    # Earlier records of last-wins duplicates may already sit in a shard: encode_shard drops them.
    p.drop_lines = sorted(drop)
    if full_sync:
        gone = sorted(set(state) - set(seen))
        if gone:
            path = Path(p.staging) / "tombstones.parquet"
            pq.write_table(pa.table({"entity_id": pa.array(gone, pa.string())}), path)
            p.tombstones.append(str(path))


def attrs_hash(kept: tuple) -> str:
    """A short hash of the kept values: a changed label is a change even when the text is not."""
    return hashlib.sha256(json.dumps(kept, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


def _empty_buffer(keep: tuple[str, ...]) -> dict[str, list]:
    buf: dict[str, list] = {k: [] for k in ("line", "entity_id", "content", "content_hash", "attrs_hash", "event_timestamp", "tokens")}
    buf.update({c: [] for c in keep})
    return buf


def _buffer_table(buffer: dict[str, list], keep_cols: list[str]) -> pa.Table:
    return pa.table(
        {
            "line": pa.array(buffer["line"], pa.int64()),
            "entity_id": pa.array(buffer["entity_id"], pa.string()),
            "content": pa.array(buffer["content"], pa.string()),
            **({"tokens": pa.array(buffer["tokens"], pa.list_(pa.string()))} if buffer["tokens"] else {}),
            "content_hash": pa.array(buffer["content_hash"], pa.string()),
            "attrs_hash": pa.array(buffer["attrs_hash"], pa.string()),
            "event_timestamp": pa.array(buffer["event_timestamp"], TIMESTAMP),
            **{c: pa.array(buffer[c], pa.string()) for c in keep_cols},
        }
    )


def load_encoder(p: Plan) -> BaseEncoder:
    """The plan's encoder, refusing to go on if its weights changed since the plan was made."""
    enc = get_encoder(p.encoder, **p.encoder_options)
    if enc.encoder_id != p.encoder_id:
        raise EncoderError(
            f"encoder {p.encoder!r} is now {enc.encoder_id}, but the run was planned with {p.encoder_id}; "
            "its weights changed during the run: start it again"
        )
    return enc


def encode_shard(plan_path: str | Path, index: int, encoder: BaseEncoder | None = None) -> dict[str, Any]:
    """Encode shard ``index`` of a plan and commit it; safe to retry (idempotent commit)."""
    p = Plan.load(plan_path)
    started = time.perf_counter()
    table = _table(p)
    app_id = f"{_APP_ID}-{p.run_id}-{index}"
    if _committed(table, app_id):
        return _result(index, 0, 0, None, time.perf_counter() - started, table.version(), already=True)
    rows = _without_dropped(pq.read_table(p.shards[index]), p)
    enc = encoder if encoder is not None and encoder.encoder_id == p.encoder_id else load_encoder(p)
    hashes = rows.column("content_hash").to_numpy(zero_copy_only=False)
    unique_hashes, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    texts = rows.column("content").to_pylist()
    result = enc.encode_with_stats([texts[i] for i in first])
    if result.vectors.shape != (len(unique_hashes), enc.dim):
        raise EncoderError(f"encoder {p.encoder_id} returned shape {result.vectors.shape}, expected ({len(unique_hashes)}, {enc.dim})")
    stats = EncodeResult(result.vectors[inverse], result.n_tokens[inverse], result.n_oov[inverse], result.zero[inverse])
    version = _commit(table, _feature_rows(p, rows, stats), TableMeta(**p.meta), app_id)
    return _result(index, rows.num_rows, len(unique_hashes), stats, time.perf_counter() - started, version)


def reuse_vectors(plan_path: str | Path, index: int, encoder: BaseEncoder | None = None) -> dict[str, Any]:
    """Commit copy batch ``index``: rows whose text is already stored take the stored vector.

    Content-addressed reuse: a text encoded once (earlier in this run or in the table) is not
    encoded again for another entity. A hash that cannot be found (its row was dropped or
    deleted meanwhile) is encoded after all.
    """
    p = Plan.load(plan_path)
    started = time.perf_counter()
    table = _table(p)
    app_id = f"{_APP_ID}-{p.run_id}-copies-{index}"
    if _committed(table, app_id):
        return _result(-1, 0, 0, None, time.perf_counter() - started, table.version(), already=True)
    rows = _without_dropped(pq.read_table(p.copies[index]), p)
    stored = _stored_vectors(table, set(rows.column("content_hash").to_pylist()), p.meta["dim"])
    hashes = rows.column("content_hash").to_pylist()
    missing = sorted({h for h in hashes if h not in stored})
    forward = 0
    if missing:
        texts = dict(zip(hashes, rows.column("content").to_pylist()))
        enc = encoder if encoder is not None and encoder.encoder_id == p.encoder_id else load_encoder(p)
        fresh = enc.encode_with_stats([texts[h] for h in missing])
        for i, h in enumerate(missing):
            stored[h] = (fresh.vectors[i], int(fresh.n_tokens[i]), int(fresh.n_oov[i]), bool(fresh.zero[i]))
        forward = len(missing)
    picked = [stored[h] for h in hashes]
    stats = EncodeResult(
        np.stack([v[0] for v in picked]).astype(np.float32) if picked else np.zeros((0, p.meta["dim"]), np.float32),
        np.array([v[1] for v in picked], dtype=np.int64),
        np.array([v[2] for v in picked], dtype=np.int64),
        np.array([v[3] for v in picked], dtype=bool),
    )
    version = _commit(table, _feature_rows(p, rows, stats), TableMeta(**p.meta), app_id)
    return _result(-1, rows.num_rows, forward, stats, time.perf_counter() - started, version)


def _stored_vectors(table, hashes: set[str], dim: int) -> dict[str, tuple[np.ndarray, int, int, bool]]:
    """content_hash -> (vector, n_tokens, n_oov, zero) for live rows holding one of ``hashes``."""
    import pyarrow.compute as pc

    if not hashes or not table.exists():
        return {}
    data, _ = table.scan(["content_hash", "embedding", "n_tokens", "n_oov", "zero_vector", "deleted"])
    data = data.filter(pc.and_(pc.is_in(data.column("content_hash"), value_set=pa.array(sorted(hashes))), pc.invert(pc.fill_null(data.column("deleted"), False))))
    found: dict[str, tuple[np.ndarray, int, int, bool]] = {}
    if data.num_rows == 0:
        return found
    from featurestore.store import embeddings_to_numpy

    vectors = embeddings_to_numpy(data.column("embedding"), dim)
    for i, (h, nt, no, z) in enumerate(zip(*(data.column(c).to_pylist() for c in ("content_hash", "n_tokens", "n_oov", "zero_vector")))):
        found.setdefault(h, (vectors[i], nt or 0, no or 0, bool(z)))
    return found


def _table(p: Plan):
    return Store(p.store).table(p.view, p.encoder_id, TableMeta(**p.meta))


def _committed(table, app_id: str) -> bool:
    return table.exists() and table.delta().transaction_version(app_id) is not None


def _without_dropped(rows: pa.Table, p: Plan) -> pa.Table:
    if not p.drop_lines:
        return rows
    import pyarrow.compute as pc

    return rows.filter(pc.invert(pc.is_in(rows.column("line"), value_set=pa.array(p.drop_lines, pa.int64()))))


def _result(index: int, rows: int, forward: int, stats: EncodeResult | None, seconds: float, version: int | None, *, already: bool = False) -> dict[str, Any]:
    return {
        "shard": index,
        "rows": rows,
        "forward": forward,
        "n_tokens": int(stats.n_tokens.sum()) if stats is not None else 0,
        "n_oov": int(stats.n_oov.sum()) if stats is not None else 0,
        "zero": int(stats.zero.sum()) if stats is not None else 0,
        "seconds": seconds,
        "version": version,
        "already_committed": already,
    }


def _feature_rows(p: Plan, rows: pa.Table, stats: EncodeResult) -> pa.Table:
    """Staged rows + their vectors -> rows of the feature table's schema."""
    n = rows.num_rows
    now = datetime.now(timezone.utc)
    run_time = datetime.fromisoformat(p.run_time)
    event = rows.column("event_timestamp").to_pylist()
    return pa.table(
        {
            "entity_id": rows.column("entity_id"),
            "content_hash": rows.column("content_hash"),
            "attrs_hash": rows.column("attrs_hash"),
            "encoder_id": pa.array([p.encoder_id] * n, pa.string()),
            "embedding": vectors_to_binary(stats.vectors),
            "event_timestamp": pa.array([e or run_time for e in event], TIMESTAMP),
            "created_at": pa.array([now] * n, TIMESTAMP),
            "deleted": pa.array([False] * n, pa.bool_()),
            "n_tokens": pa.array(stats.n_tokens, pa.int32()),
            "n_oov": pa.array(stats.n_oov, pa.int32()),
            "zero_vector": pa.array(stats.zero, pa.bool_()),
            **{c: rows.column(c) for c in p.source.get("keep", [])},
        }
    )


def _commit(table, rows: pa.Table, meta: TableMeta, app_id: str) -> int:
    """Append with an app transaction id so that a retry of the same shard is a no-op."""
    from deltalake import CommitProperties, Transaction, write_deltalake

    from featurestore.store.table import _writer_properties

    if _committed(table, app_id):
        return int(table.version())
    creating = not table.exists()
    table.check_compatible(meta)
    if creating:
        Path(table.uri).mkdir(parents=True, exist_ok=True)
    write_deltalake(
        table.uri,
        rows,
        mode="append",
        name=meta.view if creating else None,
        description=meta.to_json() if creating else None,
        schema_mode=None if creating else "merge",
        writer_properties=_writer_properties(),
        commit_properties=CommitProperties(app_transactions=[Transaction(app_id=app_id, version=1)]),
    )
    return int(table.delta().version())


def finish(plan_path: str | Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Commit reused vectors and tombstones, record the run, remove the staging folder.

    ``results`` are the encode_shard results; the summary counts everything written.
    """
    p = Plan.load(plan_path)
    store = Store(p.store)
    table = _table(p)
    results = list(results)
    for index in range(len(p.copies)):
        results.append(reuse_vectors(plan_path, index))
    deleted = 0
    for path in p.tombstones:
        ids = pq.read_table(path).column("entity_id")
        n = len(ids)
        now = datetime.now(timezone.utc)
        rows = pa.table(
            {
                "entity_id": ids,
                "content_hash": pa.nulls(n, pa.string()),
                "attrs_hash": pa.nulls(n, pa.string()),
                "encoder_id": pa.array([p.encoder_id] * n, pa.string()),
                "embedding": pa.nulls(n, pa.binary()),
                "event_timestamp": pa.array([now] * n, TIMESTAMP),
                "created_at": pa.array([now] * n, TIMESTAMP),
                "deleted": pa.array([True] * n, pa.bool_()),
                "n_tokens": pa.nulls(n, pa.int32()),
                "n_oov": pa.nulls(n, pa.int32()),
                "zero_vector": pa.nulls(n, pa.bool_()),
            }
        )
        _commit(table, rows, TableMeta(**p.meta), f"{_APP_ID}-{p.run_id}-tombstones")
        deleted += n
    summary = summarize(p, results, deleted=deleted, version=table.version())
    store.record_run(summary)
    shutil.rmtree(p.staging, ignore_errors=True)
    _remove_empty_parents(Path(p.staging).parent, store.path)
    return summary


def summarize(p: Plan, results: list[dict[str, Any]], *, deleted: int, version: int | None) -> dict[str, Any]:
    seconds = time.time() - p.started_at
    encoded = sum(r["rows"] for r in results)
    tokens = sum(r["n_tokens"] for r in results)
    return {
        "view": p.view,
        "encoder": p.encoder,
        "encoder_id": p.encoder_id,
        "run_id": p.run_id,
        "source": p.source.get("path"),
        "rows_seen": p.rows_seen,
        "encoded": encoded,
        "skipped": p.unchanged,
        "failed": p.failed,
        "duplicates": p.duplicates,
        "deleted": deleted,
        "forward_passes": sum(r["forward"] for r in results),
        "reused": encoded - sum(r["forward"] for r in results),
        "zero_vectors": sum(r["zero"] for r in results),
        "oov_share": (sum(r["n_oov"] for r in results) / tokens) if tokens else 0.0,
        "rows_per_second": encoded / seconds if seconds > 0 else 0.0,
        "table_version": version,
        "previous_version": p.base_version,
        "shards": len(p.shards),
        "seconds": round(seconds, 3),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "failures": p.failures[:20],
    }


def _remove_empty_parents(path: Path, root: Path) -> None:
    """Remove now-empty staging folders up to (not including) the store root."""
    for parent in [path, *path.parents]:
        if parent == root or root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break


ProgressFn = Callable[[int, int], None]


def materialize(
    source: Source,
    view: str,
    encoder: str,
    *,
    store: Store | str | None = None,
    encoder_options: dict[str, Any] | None = None,
    full_sync: bool = False,
    on_duplicate: OnDuplicate = "error",
    strict: bool = False,
    shard_size: int = 4096,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Plan, encode every shard and finish, in this process (no Prefect); returns the summary."""
    p = plan(
        source,
        view,
        encoder,
        store=store,
        encoder_options=encoder_options,
        full_sync=full_sync,
        on_duplicate=on_duplicate,
        strict=strict,
        shard_size=shard_size,
    )
    return run_plan(p, progress=progress)


def run_plan(p: Plan, *, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Encode and commit the shards of a saved plan, then finish it."""
    results = []
    done = 0
    enc = load_encoder(p) if p.shards else None
    for index in range(len(p.shards)):
        result = encode_shard(p.path, index, enc)
        results.append(result)
        done += result["rows"]
        if progress:
            progress(done, p.to_encode)
    return finish(p.path, results)


__all__ = ["Plan", "encode_shard", "finish", "materialize", "plan", "run_plan", "summarize"]
