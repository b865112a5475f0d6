"""The materialize flow: plan the diff -> encode shards -> commit -> artifact.

A thin composition of :mod:`featurestore.materialize`; tasks pass a plan path and a shard
index. Retries cover transient failures (I/O, Delta commit conflicts), never user errors.

Shard tasks are submitted to the flow's task runner: by default one thread (the encoder already
uses every core), or Dask workers with ``materialize_flow.with_options(task_runner=...)`` (see
:mod:`flows.dask_runner`). Concurrent shard commits are Delta appends with distinct app
transaction ids: delta-rs rebases an append onto a newer version without conflict, so no row is
lost or written twice. Only the commit that creates a new table writes its metadata; a shard that
tried to create it at the same time retries its commit against the new table
(:func:`featurestore.materialization.encoding.commit`), without encoding again.
"""

from __future__ import annotations

import re
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from featurestore import materialization as lib
from featurestore.sources import from_dict
from flows.progress import call_hooks


def transient(task, task_run, state) -> bool:  # noqa: ARG001 - Prefect's signature
    """Retry on I/O failures and Delta commit conflicts; never on user errors or bugs."""
    from deltalake.exceptions import CommitFailedError

    try:
        state.result()
    except (OSError, CommitFailedError):
        return True
    except Exception:  # noqa: BLE001 - everything else is deterministic: retrying repeats it
        return False
    return False


@task(name="plan-diff", retries=2, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def plan_task(source: dict[str, Any], view: str, encoder: str, store: str | None, options: dict[str, Any]) -> str:
    p = lib.plan(from_dict(source), view, encoder, store=store, **options)
    return str(p.path)


@task(name="encode-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=transient, cache_policy=NO_CACHE)
def encode_shard_task(plan_path: str, index: int) -> dict[str, Any]:
    return lib.encode_shard(plan_path, index)


@task(name="commit-run", retries=2, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def finish_task(plan_path: str, results: list[dict[str, Any]]) -> dict[str, Any]:
    return lib.finish(plan_path, results)


def artifact_markdown(summary: dict[str, Any]) -> str:
    rows = [
        ("view", summary["view"]),
        ("encoder_id", summary["encoder_id"]),
        ("rows seen", summary["rows_seen"]),
        ("encoded", summary["encoded"]),
        ("skipped (unchanged)", summary["skipped"]),
        ("failed", summary["failed"]),
        ("deleted (tombstones)", summary["deleted"]),
        ("OOV share", f"{summary['oov_share']:.2%}"),
        ("rows per second", f"{summary['rows_per_second']:.1f}"),
        ("table version", summary["table_version"]),
        ("seconds", summary["seconds"]),
    ]
    lines = ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
    if summary.get("failures"):
        lines += ["", "| line | entity_id | reason |", "|---|---|---|"]
        lines += [f"| {f['line']} | {f['entity_id']} | {f['reason']} |" for f in summary["failures"]]
    return "\n".join(lines)


def publish_artifact(summary: dict[str, Any]) -> None:
    key = re.sub(r"[^a-z0-9-]+", "-", f"materialize-{summary['view']}-{summary['encoder_id']}".lower())
    create_markdown_artifact(
        markdown=artifact_markdown(summary),
        key=key[:100],
        description=f"materialize {summary['view']} with {summary['encoder_id']}",
    )


@flow(name="materialize", log_prints=False, persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=1))
def materialize_flow(
    source: dict[str, Any],
    view: str,
    encoder: str,
    store: str | None = None,
    options: dict[str, Any] | None = None,
    plan_path: str | None = None,
) -> dict[str, Any]:
    """Materialize ``source`` into ``view`` with ``encoder``.

    ``options`` are :func:`featurestore.materialization.plan` keywords (full_sync, on_duplicate,
    strict, shard_size, encoder_options). ``plan_path`` skips planning for a plan already made.
    """
    path = plan_path or plan_task(source, view, encoder, store, options or {})
    p = lib.Plan.load(path)
    results: list[dict[str, Any]] = []
    done = 0
    futures = [encode_shard_task.submit(path, index) for index in range(len(p.shards))]
    for future in futures:  # in shard order: progress counts rows whose commit is done
        result = future.result()
        results.append(result)
        done += result["rows"]
        call_hooks(done, p.to_encode)
    summary = finish_task(path, results)
    call_hooks(p.to_encode, p.to_encode)  # reused vectors are written by finish
    publish_artifact(summary)
    return summary

