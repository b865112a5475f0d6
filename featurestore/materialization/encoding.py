"""Encoding staged rows and committing them: one Delta commit per shard, idempotent on retry.

Each commit carries an app transaction id ``featurestore-materialize-<run>-<part>``: a retried
task finds its id in the log and writes nothing, and a killed run loses at most the shard in
flight (the next run's plan sees what was committed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.encoders import BaseEncoder, EncodeResult, from_meta
from featurestore.errors import EncoderError, SourceError
from featurestore.materialization.planning import Plan
from featurestore.store import FeatureTable, Store, TableMeta, embeddings_to_numpy, vectors_to_binary
from featurestore.store.schema import TIMESTAMP

APP_ID = "featurestore-materialize"


def load_encoder(p: Plan) -> BaseEncoder:
    """The plan's encoder, refusing to go on if its weights changed since the plan was made."""
    return from_meta(p.encoder, p.encoder_options, expect_id=p.encoder_id, owner=f"the run {p.run_id} of view {p.view!r}")


def plan_table(p: Plan) -> FeatureTable:
    return Store(p.store).table(p.view, p.encoder_id, TableMeta(**p.meta))


@dataclass
class _Batch:
    """A shard or copy batch of a plan about to be committed under its app transaction id;
    ``rows`` is None when a commit with that id is in the table already (a retried task)."""

    plan: Plan
    table: FeatureTable
    app_id: str
    started: float
    rows: pa.Table | None

    def encoder(self, given: BaseEncoder | None) -> BaseEncoder:
        """``given`` when it is the plan's encoder, else the plan's encoder loaded."""
        return given if given is not None and given.encoder_id == self.plan.encoder_id else load_encoder(self.plan)

    def result(self, rows: int, forward: int, stats: EncodeResult | None, failures: list[dict[str, Any]], version: int | None) -> dict[str, Any]:
        return _result(rows, forward, stats, failures, time.perf_counter() - self.started, version, already=self.rows is None)


def _open_batch(plan_path: str | Path, index: int, *, copies: bool) -> _Batch:
    p = Plan.load(plan_path)
    started = time.perf_counter()
    table = plan_table(p)
    app_id = f"{APP_ID}-{p.run_id}-{'copies-' if copies else ''}{index}"
    if committed(table, app_id):
        return _Batch(p, table, app_id, started, None)
    return _Batch(p, table, app_id, started, _without_dropped(pq.read_table((p.copies if copies else p.shards)[index]), p))


def encode_shard(plan_path: str | Path, index: int, encoder: BaseEncoder | None = None) -> dict[str, Any]:
    """Encode shard ``index`` of a plan (each distinct content once) and commit it."""
    batch = _open_batch(plan_path, index, copies=False)
    if batch.rows is None:
        return batch.result(0, 0, None, [], batch.table.version())
    p, rows, enc = batch.plan, batch.rows, batch.encoder(encoder)
    if p.granularity == "token":
        out, stats, forward, failures = _token_rows(p, rows, enc)
        rows = rows.filter(pa.array(stats.n_tokens > 0)) if failures else rows
    else:
        hashes = rows.column("content_hash").to_numpy(zero_copy_only=False)
        unique, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        contents = rows.column("content").to_pylist()
        result = enc.encode_with_stats([contents[i] for i in first])
        if result.vectors.shape != (len(unique), enc.dim):
            raise EncoderError(f"encoder {p.encoder_id} returned shape {result.vectors.shape}, expected ({len(unique)}, {enc.dim})")
        errors = [result.errors[i] for i in inverse] if result.errors else [None] * rows.num_rows
        stats = EncodeResult(result.vectors[inverse], result.n_tokens[inverse], result.n_oov[inverse], result.zero[inverse], errors)
        rows, stats, failures = _drop_failed(p, rows, stats)
        out, forward = feature_rows(p, rows, stats), len(unique)
    version = commit(batch.table, out, TableMeta(**p.meta), batch.app_id)
    return batch.result(rows.num_rows, forward, stats, failures, version)


def _drop_failed(p: Plan, rows: pa.Table, stats: EncodeResult) -> tuple[pa.Table, EncodeResult, list[dict[str, Any]]]:
    """Rows the encoder could not take (a corrupt image) are reported, not stored; fatal under strict."""
    errors = stats.errors or []
    bad = [i for i, e in enumerate(errors) if e is not None]
    if not bad:
        return rows, stats, []
    lines = rows.column("line").to_pylist()
    ids = rows.column("entity_id").to_pylist()
    failures = [{"line": lines[i], "entity_id": ids[i], "reason": errors[i]} for i in bad]
    if p.strict:
        first = failures[0]
        raise SourceError(f"{first['entity_id']}: {first['reason']} (`strict=True` makes this fatal)")
    good = np.setdiff1d(np.arange(rows.num_rows), bad)
    kept = EncodeResult(stats.vectors[good], stats.n_tokens[good], stats.n_oov[good], stats.zero[good])
    return rows.take(pa.array(good)), kept, failures


def reuse_vectors(plan_path: str | Path, index: int, encoder: BaseEncoder | None = None) -> dict[str, Any]:
    """Commit copy batch ``index``: rows whose content is already stored take the stored vector.

    Content-addressed reuse: content encoded once (earlier in this run or in the table) is not
    encoded again for another entity. A hash that cannot be found (its row was dropped or
    deleted meanwhile) is encoded after all.
    """
    batch = _open_batch(plan_path, index, copies=True)
    if batch.rows is None:
        return batch.result(0, 0, None, [], batch.table.version())
    p, rows = batch.plan, batch.rows
    hashes = rows.column("content_hash").to_pylist()
    stored = _stored_vectors(batch.table, set(hashes), p.meta["dim"])
    missing = sorted({h for h in hashes if h not in stored})
    if missing:
        contents = dict(zip(hashes, rows.column("content").to_pylist()))
        fresh = batch.encoder(encoder).encode_with_stats([contents[h] for h in missing])
        for i, h in enumerate(missing):
            error = fresh.errors[i] if fresh.errors else None
            stored[h] = (fresh.vectors[i], int(fresh.n_tokens[i]), int(fresh.n_oov[i]), bool(fresh.zero[i]), error)
    picked = [stored[h] for h in hashes]
    dim = p.meta["dim"]
    stats = EncodeResult(
        np.stack([v[0] for v in picked]).astype(np.float32) if picked else np.zeros((0, dim), np.float32),
        np.array([v[1] for v in picked], dtype=np.int64),
        np.array([v[2] for v in picked], dtype=np.int64),
        np.array([v[3] for v in picked], dtype=bool),
        [v[4] for v in picked],
    )
    rows, stats, failures = _drop_failed(p, rows, stats)
    version = commit(batch.table, feature_rows(p, rows, stats), TableMeta(**p.meta), batch.app_id)
    return batch.result(rows.num_rows, len(missing), stats, failures, version)


def _stored_vectors(table: FeatureTable, hashes: set[str], dim: int) -> dict[str, tuple]:
    """content_hash -> (vector, n_tokens, n_oov, zero, None) for stored content among ``hashes``."""
    data = table.rows_with_hashes(hashes, ["embedding", "n_tokens", "n_oov", "zero_vector"])
    data = data.filter(pc.is_valid(data.column("embedding"))) if data.num_rows else data
    if data.num_rows == 0:
        return {}
    vectors = embeddings_to_numpy(data.column("embedding"), dim)
    columns = (data.column(c).to_pylist() for c in ("content_hash", "n_tokens", "n_oov", "zero_vector"))
    return {h: (vectors[i], n_tokens or 0, n_oov or 0, bool(zero), None) for i, (h, n_tokens, n_oov, zero) in enumerate(zip(*columns))}


def _token_rows(p: Plan, rows: pa.Table, enc: BaseEncoder) -> tuple[pa.Table, EncodeResult, int, list[dict[str, Any]]]:
    """One row per word: the sentence's columns repeated, aligned list columns split per word.

    A text in which the encoder finds no word is a failed row ("no words"): it has nothing to store.
    """
    contents = rows.column("content").to_pylist()
    given = rows.column("tokens").to_pylist() if "tokens" in rows.column_names else None
    result = enc.encode_tokens(contents, given)
    counts = np.array([len(t) for t in result.tokens], dtype=np.int64)
    empty = np.flatnonzero(counts == 0)
    lines, ids = rows.column("line").to_pylist(), rows.column("entity_id").to_pylist()
    failures = [{"line": lines[i], "entity_id": ids[i], "reason": "no words"} for i in empty]
    if failures and p.strict:
        raise SourceError(f"{failures[0]['entity_id']}: no words (`strict=True` makes this fatal)")
    repeat = np.repeat(np.arange(rows.num_rows), counts)
    flat_tokens = [t for sentence in result.tokens for t in sentence]
    oov = np.concatenate(result.oov) if len(flat_tokens) else np.zeros(0, dtype=bool)
    vectors = np.concatenate(result.vectors).astype(np.float32) if len(flat_tokens) else np.zeros((0, enc.dim), np.float32)
    n_oov = np.array([int(o.sum()) for o in result.oov], dtype=np.int64)
    per_word = rows.take(pa.array(repeat, pa.int64()))
    stats = EncodeResult(vectors, counts[repeat], n_oov[repeat], oov)
    table = feature_rows(p, per_word, stats, keep=_split_aligned(p, rows, counts))
    table = table.append_column("token_index", pa.array(np.concatenate([np.arange(c) for c in counts]) if len(flat_tokens) else [], pa.int32()))
    table = table.append_column("token", pa.array([t[0] for t in flat_tokens], pa.string()))
    table = table.append_column("char_start", pa.array([t[1] for t in flat_tokens], pa.int32()))
    table = table.append_column("char_end", pa.array([t[2] for t in flat_tokens], pa.int32()))
    table = table.append_column("oov", pa.array(oov, pa.bool_()))
    per_sentence = EncodeResult(np.zeros((rows.num_rows, 0), np.float32), counts, n_oov, np.zeros(rows.num_rows, bool))
    return table, per_sentence, rows.num_rows, failures


def _split_aligned(p: Plan, rows: pa.Table, counts: np.ndarray) -> dict[str, pa.Array]:
    """Kept columns for word rows: a list column with one value per word is split per word."""
    out: dict[str, pa.Array] = {}
    for name in p.source.get("keep", []):
        column = rows.column(name)
        values = column.to_pylist()
        if pa.types.is_list(column.type) and all(v is None or len(v) == c for v, c in zip(values, counts)):
            out[name] = pa.array([x for v, c in zip(values, counts) for x in (v if v is not None else [None] * c)], pa.string())
        else:
            out[name] = pa.array([v for v, c in zip(values, counts) for _ in range(c)], column.type)
    return out


def _without_dropped(rows: pa.Table, p: Plan) -> pa.Table:
    if not p.drop_lines:
        return rows
    return rows.filter(pc.invert(pc.is_in(rows.column("line"), value_set=pa.array(p.drop_lines, pa.int64()))))


def feature_rows(p: Plan, rows: pa.Table, stats: EncodeResult, keep: dict[str, pa.Array] | None = None) -> pa.Table:
    """Staged rows + their vectors -> rows of the feature table's schema."""
    n = rows.num_rows
    now = datetime.now(timezone.utc)
    run_time = datetime.fromisoformat(p.run_time)
    event = rows.column("event_timestamp").to_pylist()
    kept = keep if keep is not None else {c: rows.column(c) for c in p.source.get("keep", [])}
    return pa.table(
        {
            "entity_id": rows.column("entity_id"),
            "content_hash": rows.column("content_hash"),
            "attrs_hash": rows.column("attrs_hash"),
            "encoder_id": pa.array([p.encoder_id] * n, pa.string()),
            "embedding": vectors_to_binary(stats.vectors.reshape(n, -1) if n else np.zeros((0, p.meta["dim"]), np.float32)),
            "event_timestamp": pa.array([e or run_time for e in event], TIMESTAMP),
            "created_at": pa.array([now] * n, TIMESTAMP),
            "deleted": pa.array([False] * n, pa.bool_()),
            "n_tokens": pa.array(stats.n_tokens, pa.int32()),
            "n_oov": pa.array(stats.n_oov, pa.int32()),
            "zero_vector": pa.array(stats.zero, pa.bool_()),
            **kept,
        }
    )


def tombstone_rows(p: Plan, ids: pa.Array) -> pa.Table:
    n = len(ids)
    now = datetime.now(timezone.utc)
    return pa.table(
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


COMMIT_ATTEMPTS = 5


def committed(table: FeatureTable, app_id: str) -> bool:
    return table.exists() and table.delta().transaction_version(app_id) is not None


def commit(table: FeatureTable, rows: pa.Table, meta: TableMeta, app_id: str) -> int:
    """Append with an app transaction id so that a retry of the same part is a no-op.

    Shards committed at once by several workers race only when they create the table: the
    losers' CommitFailedError is retried here, against the table the winner created, instead of
    failing the shard (whose retry would encode it again).
    """
    from deltalake import CommitProperties, Transaction
    from deltalake.exceptions import CommitFailedError

    for attempt in range(COMMIT_ATTEMPTS):
        if committed(table, app_id):
            return int(table.version())
        try:
            return table.append(rows, meta, commit_properties=CommitProperties(app_transactions=[Transaction(app_id=app_id, version=1)]))
        except CommitFailedError:
            if attempt == COMMIT_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _result(rows: int, forward: int, stats: EncodeResult | None, failures: list[dict[str, Any]], seconds: float, version: int | None, *, already: bool = False) -> dict[str, Any]:
    return {
        "rows": rows,
        "forward": forward,
        "n_tokens": int(stats.n_tokens.sum()) if stats is not None else 0,
        "n_oov": int(stats.n_oov.sum()) if stats is not None else 0,
        "zero": int(stats.zero.sum()) if stats is not None else 0,
        "failures": failures,
        "seconds": seconds,
        "version": version,
        "already_committed": already,
    }
