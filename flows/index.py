"""The index flow: bring a view's FAISS index up to date as a Prefect task, with an artifact."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from featurestore import index as lib
from featurestore.index import IndexResult
from flows.artifacts import artifact_key
from flows.materialize import transient


@task(name="index-ensure", retries=2, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def ensure_task(view: str, encoder: str | None, *, store: str | None, options: dict[str, Any]) -> IndexResult:
    return lib.ensure_index(view, encoder, store=store, **options)


def artifact_markdown(result: IndexResult) -> str:
    info = result.info
    rows = [
        ("view", info.view),
        ("encoder_id", info.encoder_id),
        ("index", info.factory),
        ("search parameters", info.params or "exact"),
        ("rows indexed", info.rows),
        ("recall@10 (measured)", info.recall_at_10),
        ("latency ms/query (batch)", info.latency_ms),
        ("memory MB", round(info.memory_bytes / 1e6, 2)),
        ("rebuilt", result.rebuilt),
        ("added / removed", f"{result.added} / {result.removed}"),
        ("table version", info.table_version),
    ]
    return "\n".join(["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


@flow(name="index", log_prints=False, persist_result=False)
def index_flow(view: str, encoder: str | None = None, *, store: str | None = None, options: dict[str, Any] | None = None) -> IndexResult:
    """Bring a view's index up to date (:func:`featurestore.index.ensure_index`: built when there
    is none, with ``options``), then publish an artifact."""
    result = ensure_task(view, encoder, store=store, options=options or {})
    create_markdown_artifact(markdown=artifact_markdown(result), key=artifact_key("index", result.info.view, result.info.encoder_id),
                             description=f"index of {result.info.view}")
    return result
