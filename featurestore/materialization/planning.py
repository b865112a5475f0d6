"""Planning a run: stream the source once, diff it against the table, stage what must be written.

Every user error (bad file, column, duplicate id, an encoder that does not fit the source)
surfaces here, before anything is committed; a failed plan leaves the store as it found it.
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
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.encoders import BaseEncoder, get_encoder
from featurestore.errors import EncoderError, InvalidArgumentError, SourceError
from featurestore.locks import view_lock
from featurestore.params import positive_int
from featurestore.sources import Source, to_dict
from featurestore.store import Store, TableMeta
from featurestore.store.schema import SYSTEM_COLUMNS, TIMESTAMP

OnDuplicate = Literal["error", "last"]
MAX_FAILURES_LISTED = 100


@dataclass
class Plan:
    """What a run will do; saved as ``plan.json`` in its staging folder.

    ``shards`` hold rows whose content must be encoded; ``copies`` hold rows whose content is
    already stored or staged (their vectors are reused); ``tombstones`` hold ids to delete.
    """

    run_id: str
    store: str
    view: str
    encoder: str
    encoder_options: dict[str, Any]
    encoder_id: str
    meta: dict[str, Any]
    source: dict[str, Any]
    staging: str
    strict: bool = False
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

    @property
    def granularity(self) -> str:
        return self.meta["granularity"]

    def save(self) -> str:
        self.path.write_text(json.dumps(asdict(self)))
        return str(self.path)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        return cls(**json.loads(Path(path).read_text()))


def table_meta(view: str, enc: BaseEncoder, ref: str | None = None, options: dict[str, Any] | None = None) -> TableMeta:
    """The metadata a table written by ``enc`` (asked for as ``ref`` with ``options``) carries."""
    granularity = "image" if enc.modality == "image" else getattr(enc, "granularity", "sentence")
    return TableMeta(
        view=view,
        encoder_id=enc.encoder_id,
        encoder_name=enc.name,
        encoder_spec=enc.spec,
        dim=enc.dim,
        metric=enc.metric,
        modality=enc.modality,
        granularity=granularity,
        encoder_ref=ref,
        encoder_options={k: v for k, v in (options or {}).items() if k not in ("device", "batch_size", "workers")},
    )


def check_fits(source: Source, enc: BaseEncoder) -> None:
    """An image source needs an image encoder; text and token sources need a text encoder."""
    wanted = "image" if source.modality == "image" else "text"
    if enc.modality != wanted:
        raise EncoderError(
            f"encoder {enc.name!r} takes {enc.modality} input but the source holds {source.modality}; "
            f"pick a {wanted} encoder (see `featurestore encoders`)"
        )


RESERVED = frozenset(SYSTEM_COLUMNS) | {"line", "content", "tokens", "token_index", "token", "char_start", "char_end", "oov"}


def check_keep_names(keep: tuple[str, ...]) -> None:
    """Kept columns live beside the system columns, so they cannot share their names."""
    clash = sorted(set(keep) & RESERVED)
    if clash:
        raise SourceError(
            f"cannot keep column(s) {', '.join(repr(c) for c in clash)}: the store uses these names itself "
            f"({', '.join(sorted(RESERVED))}); rename the column in the source"
        )


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
    """Scan the source against the table's latest state and stage the rows to write.

    Raises a :class:`FeatureStoreError` subclass, with the store untouched, on any user error.
    Stages under the view's lock (:mod:`featurestore.locks`), after removing what killed runs of
    the view left staged (:func:`clear_dead_staging`); run the plan under the lock as well (as
    :func:`~featurestore.materialization.materialize` does), so that no other run clears its staging.
    """
    if on_duplicate not in ("error", "last"):
        raise InvalidArgumentError(f"on_duplicate must be 'error' or 'last'. Got {on_duplicate!r} instead.")
    positive_int("shard size (`shard_size`)", shard_size)
    store = Store.of(store)
    options = dict(encoder_options or {})
    enc = get_encoder(encoder, **options)
    check_fits(source, enc)
    check_keep_names(source.keep)
    meta = table_meta(view, enc, encoder, options)
    table = store.table(view, enc.encoder_id)
    table.check_compatible(meta)
    with view_lock(view, "materialize", store=store, encoder_id=enc.encoder_id):  # re-entrant: materialize and the runner hold it for the whole run
        clear_dead_staging(view, enc.encoder_id, store=store)
        state = table.state()
        run_id = uuid.uuid4().hex[:12]
        staging = store.staging_dir(view, enc.encoder_id) / run_id
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
            strict=strict,
            base_version=table.version(),
            started_at=time.time(),
            run_time=datetime.now(timezone.utc).isoformat(),
        )
        try:
            staging.mkdir(parents=True, exist_ok=True)
            _stage(p, source, state, full_sync=full_sync, on_duplicate=on_duplicate, strict=strict, shard_size=shard_size)
            p.save()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            remove_empty_parents(staging.parent, store.path)
            raise  # the lock removes the store root again when this run created it (it holds no file)
        return p


class _Staging:
    """Column buffers flushed to numbered Parquet files of at most ``shard_size`` rows."""

    def __init__(self, p: Plan, kind: str, keep: list[str], shard_size: int, target: list[str], lists: dict[str, bool]) -> None:
        self.p, self.kind, self.keep, self.shard_size, self.target = p, kind, keep, shard_size, target
        self.lists = lists  # kept column -> holds lists (shared by all buffers of a run)
        self.columns: dict[str, list] = {c: [] for c in ("line", "entity_id", "content", "content_hash", "attrs_hash", "event_timestamp", "tokens", *keep)}

    def add(self, row: dict[str, Any]) -> None:
        for name, values in self.columns.items():
            values.append(row.get(name))
        if len(self.columns["line"]) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.columns["line"]:
            return
        path = Path(self.p.staging) / f"{self.kind}-{len(self.target):05d}.parquet"
        pq.write_table(self._table(), path)
        self.target.append(str(path))
        for values in self.columns.values():
            values.clear()

    def _table(self) -> pa.Table:
        cols = self.columns
        data = {
            "line": pa.array(cols["line"], pa.int64()),
            "entity_id": pa.array(cols["entity_id"], pa.string()),
            "content": pa.array(cols["content"], pa.string()),
            "content_hash": pa.array(cols["content_hash"], pa.string()),
            "attrs_hash": pa.array(cols["attrs_hash"], pa.string()),
            "event_timestamp": pa.array(cols["event_timestamp"], TIMESTAMP),
        }
        if any(t is not None for t in cols["tokens"]):
            data["tokens"] = pa.array(cols["tokens"], pa.list_(pa.string()))
        for c in self.keep:
            data[c] = pa.array(cols[c], pa.list_(pa.string()) if self.lists.get(c) else pa.string())
        return pa.table(data)


def kept_value(value: Any) -> Any:
    """Kept values are stored as strings (lists of strings stay lists)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [None if v is None else str(v) for v in value]
    return str(value)


def attrs_hash(kept: tuple) -> str:
    """A short hash of the kept values: a changed label is a change even when the content is not."""
    return hashlib.sha256(json.dumps(kept, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


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
    keep_cols = list(source.keep)
    seen: dict[str, tuple[int, str, tuple, bool]] = {}  # id -> (line, hash, kept, staged)
    conflicts: list[str] = []
    drop: set[int] = set()
    # Content not stored yet goes to shards (encoded); content already stored or staged goes
    # to copy batches (the stored vector is reused). Token rows are always encoded.
    reuse = p.granularity != "token"
    known = {digest for digest, _ in state.values()} if reuse else set()
    lists: dict[str, bool] = {}
    shards = _Staging(p, "shard", keep_cols, shard_size, p.shards, lists)
    copies = _Staging(p, "copy", keep_cols, shard_size, p.copies, lists)
    present: set[str] = set()  # ids in the source, failed rows included (never tombstoned)
    for batch in source.batches():
        for i in range(len(batch)):
            line, entity, digest = batch.line[i], batch.entity_id[i], batch.content_hash[i]
            p.rows_seen += 1
            present.add(entity)
            reason = batch.reason[i]
            if reason is not None:
                if strict:
                    raise SourceError(f"{source.path}: line {line}: {reason} (`strict=True` makes this fatal)")
                p.failed += 1
                if len(p.failures) < MAX_FAILURES_LISTED:
                    p.failures.append({"line": line, "entity_id": entity, "reason": reason})
                continue
            kept = tuple(kept_value(batch.keep[c][i]) for c in keep_cols)
            for c, value in zip(keep_cols, kept):
                if value is not None and lists.setdefault(c, isinstance(value, list)) != isinstance(value, list):
                    raise SourceError(
                        f"{source.path}: line {line}: column {c!r} mixes lists and single values; keep one kind per column"
                    )
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
            row = {
                "line": line,
                "entity_id": entity,
                "content": batch.content[i],
                "content_hash": digest,
                "attrs_hash": attrs,
                "event_timestamp": batch.event_timestamp[i],
                "tokens": batch.tokens[i] if batch.tokens is not None else None,
                **dict(zip(keep_cols, kept)),
            }
            (copies if digest in known else shards).add(row)
            if reuse:
                known.add(digest)
            p.to_encode += 1
    if conflicts:
        raise SourceError(
            f"{source.path}: duplicate ids with different content: {', '.join(conflicts)}"
            f"{' ...' if p.duplicates > len(conflicts) else ''}; make ids unique or pass `on_duplicate='last'`"
        )
    shards.flush()
    copies.flush()
    # Earlier records of last-wins duplicates may already sit in a shard: the encoders drop them.
    p.drop_lines = sorted(drop)
    if full_sync:
        gone = sorted(set(state) - present)
        if gone:
            path = Path(p.staging) / "tombstones.parquet"
            pq.write_table(pa.table({"entity_id": pa.array(gone, pa.string())}), path)
            p.tombstones.append(str(path))


def clear_dead_staging(view: str, encoder_id: str, *, store: Store) -> None:
    """Remove the staging folders that earlier runs of ``view``'s table of ``encoder_id`` left: every one is a dead run's.

    Call with the table's lock held. Every run stages under that lock (:func:`plan` takes it;
    materialize and the runner hold it from the plan to the last commit), so while it is held no
    other run's staging is live: what is there was left by a run that was killed (a failed run
    removes its own). What such a run committed stays, and this run's diff re-plans the rest.
    """
    folder = store.staging_dir(view, encoder_id)
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        remove_empty_parents(folder.parent, store.path)


def remove_empty_parents(path: Path, root: Path) -> None:
    """Remove now-empty staging folders up to (not including) the store root."""
    for parent in [path, *path.parents]:
        if parent == root or root not in parent.parents:
            break
        try:
            parent.rmdir()
        except OSError:
            break
