"""Index flows: build or update a view's FAISS index as a Prefect task, with an artifact."""

from __future__ import annotations

import re
from typing import Any, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from featurestore import index as lib
from flows.materialize import transient


@task(name="index-build", retries=2, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def build_task(view: str, encoder: str | None, store: str | None, options: dict[str, Any]) -> dict[str, Any]:
    from dataclasses import asdict

    return {"rebuilt": True, "added": None, "removed": None, **asdict(lib.build_index(view, encoder, store=store, **options))}


@task(name="index-update", retries=2, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def update_task(view: str, encoder: str | None, store: str | None) -> dict[str, Any]:
    return lib.update_index(view, encoder, store=store)


def artifact_markdown(result: dict[str, Any]) -> str:
    rows = [
        ("view", result["view"]),
        ("encoder_id", result["encoder_id"]),
        ("index", result["factory"]),
        ("search parameters", result["params"] or "exact"),
        ("rows indexed", result["rows"]),
        ("recall@10 (measured)", result["recall_at_10"]),
        ("latency ms/query (batch)", result["latency_ms"]),
        ("memory MB", round(result["memory_bytes"] / 1e6, 2)),
        ("rebuilt", result["rebuilt"]),
        ("added / removed", f"{result['added']} / {result['removed']}"),
        ("table version", result["table_version"]),
    ]
    return "\n".join(["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows]])


@flow(name="index", log_prints=False, persist_result=False)
def index_flow(view: str, encoder: str | None = None, store: str | None = None, mode: Literal["update", "build"] = "update", options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Bring a view's index up to date (building it when there is none), then publish an artifact."""
    if mode == "update" and lib.has_index(view, encoder, store=store):
        result = update_task(view, encoder, store)
    else:
        result = build_task(view, encoder, store, options or {})
    key = re.sub(r"[^a-z0-9-]+", "-", f"index-{result['view']}-{result['encoder_id']}".lower())[:100]
    create_markdown_artifact(markdown=artifact_markdown(result), key=key, description=f"index of {result['view']}")
    return result
