"""Running a plan end to end, finishing it, and the run summary."""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow.parquet as pq

from featurestore.materialization.encoding import APP_ID, commit, encode_shard, load_encoder, plan_table, reuse_vectors, tombstone_rows
from featurestore.materialization.planning import OnDuplicate, Plan, plan, remove_empty_parents
from featurestore.progress import ProgressFn
from featurestore.sources import Source
from featurestore.store import Store, TableMeta

Execute = Callable[[Plan], "RunSummary"]  # runs a saved plan's shards and finishes it: see materialize


def finish(plan_path: str | Path, results: list[dict[str, Any]]) -> RunSummary:
    """Commit reused vectors and tombstones, record the run, remove the staging folder.

    ``results`` are the :func:`encode_shard` results; the summary counts everything written.
    """
    p = Plan.load(plan_path)
    store = Store(p.store)
    table = plan_table(p)
    results = list(results)
    for index in range(len(p.copies)):
        results.append(reuse_vectors(plan_path, index))
    deleted = 0
    for path in p.tombstones:
        ids = pq.read_table(path).column("entity_id")
        commit(table, tombstone_rows(p, ids), TableMeta(**p.meta), f"{APP_ID}-{p.run_id}-tombstones")
        deleted += len(ids)
    summary = summarize(p, results, deleted=deleted, version=table.version())
    store.record_run(summary.to_dict())
    shutil.rmtree(p.staging, ignore_errors=True)
    remove_empty_parents(Path(p.staging).parent, store.path)
    return summary


@dataclass(frozen=True)
class RunSummary:
    """What a materialize did: the counts the CLI prints with --json, the artifact shows and the run log keeps."""

    view: str
    encoder: str
    encoder_id: str
    granularity: str
    run_id: str
    source: str | None
    source_spec: dict[str, Any]
    rows_seen: int
    encoded: int
    skipped: int
    failed: int
    duplicates: int
    deleted: int
    forward_passes: int
    reused: int
    tokens: int
    zero_vectors: int
    oov_share: float
    rows_per_second: float
    table_version: int | None
    previous_version: int | None
    shards: int
    seconds: float
    encode_seconds: float
    finished_at: str
    failures: list[dict[str, Any]] = field(default_factory=list)  # the first 20: line, entity_id, reason

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``featurestore materialize --json`` and of the run log."""
        return asdict(self)


def summarize(p: Plan, results: list[dict[str, Any]], *, deleted: int, version: int | None) -> RunSummary:
    """The summary of plan ``p`` once its shards' ``results`` are committed."""
    seconds = time.time() - p.started_at
    encoded = sum(r["rows"] for r in results)
    forward = sum(r["forward"] for r in results)
    tokens = sum(r["n_tokens"] for r in results)
    failures = p.failures + [f for r in results for f in r["failures"]]
    return RunSummary(
        view=p.view,
        encoder=p.encoder,
        encoder_id=p.encoder_id,
        granularity=p.granularity,
        run_id=p.run_id,
        source=p.source.get("path"),
        source_spec=p.source,
        rows_seen=p.rows_seen,
        encoded=encoded,
        skipped=p.unchanged,
        failed=p.failed + sum(len(r["failures"]) for r in results),
        duplicates=p.duplicates,
        deleted=deleted,
        forward_passes=forward,
        reused=max(encoded - forward, 0) if p.granularity != "token" else 0,
        tokens=tokens,
        zero_vectors=sum(r["zero"] for r in results),
        oov_share=(sum(r["n_oov"] for r in results) / tokens) if tokens else 0.0,
        rows_per_second=encoded / seconds if seconds > 0 else 0.0,
        table_version=version,
        previous_version=p.base_version,
        shards=len(p.shards),
        seconds=round(seconds, 3),
        encode_seconds=round(sum(r["seconds"] for r in results), 3),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        failures=failures[:20],
    )


def run_plan(p: Plan, *, progress: ProgressFn | None = None) -> RunSummary:
    """Encode and commit the shards of a saved plan in this process, then finish it."""
    with discard_on_error(p):
        results = []
        done = 0
        enc = load_encoder(p) if p.shards else None
        for index in range(len(p.shards)):
            result = encode_shard(p.path, index, enc)
            results.append(result)
            done += result["rows"] + len(result["failures"])
            if progress:
                progress(done, p.to_encode)
        summary = finish(p.path, results)
        if progress:
            progress(p.to_encode, p.to_encode)  # reused vectors are written by finish
        return summary


@contextmanager
def discard_on_error(p: Plan) -> Iterator[None]:
    """Remove a failed run's staging folder: what it committed stays, the next plan re-stages the rest."""
    try:
        yield
    except BaseException:
        shutil.rmtree(p.staging, ignore_errors=True)
        remove_empty_parents(Path(p.staging).parent, Path(p.store))
        raise


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
    execute: Execute | None = None,
) -> RunSummary:
    """Encode ``source`` into ``view`` with ``encoder``, incrementally: the one orchestration of a materialize.

    Holds the table's write lock (:mod:`featurestore.locks`) from the plan to the last commit,
    plans the diff (user errors surface here, the store untouched), then runs the plan with
    ``execute(plan)``: by default :func:`run_plan` in this process with ``progress``;
    :func:`flows.runner.run` passes the Prefect or Dask flow instead. Returns the run summary
    (rows_seen, encoded, skipped, failed, table_version, seconds ...).
    """
    from featurestore.encoders import get_encoder
    from featurestore.locks import view_lock

    with view_lock(view, "materialize", store=store, encoder_id=get_encoder(encoder, **(encoder_options or {})).encoder_id):
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
        return execute(p) if execute is not None else run_plan(p, progress=progress)
