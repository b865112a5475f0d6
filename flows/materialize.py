"""The materialize flow: encode the shards of a plan -> commit -> artifact.

The ``execute`` step of :func:`featurestore.materialize` (which locks and plans); tasks pass a
plan path and a shard index. Retries cover transient failures (I/O, Delta commit conflicts), never user errors.

Shard tasks are submitted to the flow's task runner: by default one thread (the encoder already
uses every core), or Dask workers with ``materialize_flow.with_options(task_runner=...)`` (see
:mod:`flows.dask_runner`). Concurrent shard commits are Delta appends with distinct app
transaction ids: delta-rs rebases an append onto a newer version without conflict, so no row is
lost or written twice. Only the commit that creates a new table writes its metadata; a shard that
tried to create it at the same time retries its commit against the new table
(:func:`featurestore.materialization.encoding.commit`), without encoding again.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from featurestore import materialization as lib
from featurestore.materialization.runs import RunSummary
from flows.artifacts import artifact_key
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


@task(name="encode-shard", retries=2, retry_delay_seconds=2, retry_condition_fn=transient, cache_policy=NO_CACHE)
def encode_shard_task(plan_path: str, index: int) -> dict[str, Any]:
    return lib.encode_shard(plan_path, index)


@task(name="commit-run", retries=2, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def finish_task(plan_path: str, results: list[dict[str, Any]]) -> RunSummary:
    return lib.finish(plan_path, results)


def artifact_markdown(summary: RunSummary) -> str:
    rows = [
        ("view", summary.view),
        ("encoder_id", summary.encoder_id),
        ("rows seen", summary.rows_seen),
        ("encoded", summary.encoded),
        ("skipped (unchanged)", summary.skipped),
        ("failed", summary.failed),
        ("deleted (tombstones)", summary.deleted),
        ("OOV share", f"{summary.oov_share:.2%}"),
        ("rows per second", f"{summary.rows_per_second:.1f}"),
        ("table version", summary.table_version),
        ("seconds", summary.seconds),
    ]
    lines = ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]]
    if summary.failures:
        lines += ["", "| line | entity_id | reason |", "|---|---|---|"]
        lines += [f"| {f['line']} | {f['entity_id']} | {f['reason']} |" for f in summary.failures]
    return "\n".join(lines)


def publish_artifact(summary: RunSummary) -> None:
    create_markdown_artifact(
        markdown=artifact_markdown(summary),
        key=artifact_key("materialize", summary.view, summary.encoder_id),
        description=f"materialize {summary.view} with {summary.encoder_id}",
    )


@flow(name="materialize", log_prints=False, persist_result=False, task_runner=ThreadPoolTaskRunner(max_workers=1))
def materialize_flow(plan_path: str) -> RunSummary:
    """Encode and commit the shards of the plan saved at ``plan_path``, then finish it.

    :func:`featurestore.materialize` (through :func:`flows.runner.run`) takes the table's lock
    and makes the plan; this flow is its ``execute`` step.
    """
    p = lib.Plan.load(plan_path)
    results: list[dict[str, Any]] = []
    done = 0
    futures = [encode_shard_task.submit(plan_path, index) for index in range(len(p.shards))]
    for future in futures:  # in shard order: progress counts rows whose commit is done
        result = future.result()
        results.append(result)
        done += result["rows"]
        call_hooks(done, p.to_encode)
    summary = finish_task(plan_path, results)
    call_hooks(p.to_encode, p.to_encode)  # reused vectors are written by finish
    publish_artifact(summary)
    return summary
