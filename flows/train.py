"""The training flow: fit and evaluate a head on stored features -> register it -> artifact.

One coarse task does the work (building the training set, cross-validation, the final fit):
the heads train in seconds, so splitting them into Prefect tasks would only add overhead.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from featurestore.progress import ProgressFn
from flows.artifacts import artifact_key
from flows.materialize import transient
from flows.progress import call_hooks, progress_hook
from flows.runner import STEP_RUNNERS, Runner, check_runner, in_flow


@dataclasses.dataclass(frozen=True)
class TrainSummary:
    """A trained and registered head: its name and version in the registry, its folder, its
    metrics, the rows it was trained on and the encoder ids of its tables."""

    name: str
    version: int
    task: str
    path: str
    metrics: dict[str, Any]
    rows: int
    encoders: list[str | None]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``featurestore train --json``."""
        return dataclasses.asdict(self)


@task(name="train-head", retries=1, retry_delay_seconds=1, retry_condition_fn=transient, cache_policy=NO_CACHE)
def train_task(task_name: str, view: str, encoder: str | None, *, store: str | None, name: str, options: dict[str, Any]) -> TrainSummary:
    return train_and_register(task_name, view, encoder, store=store, name=name, options=options, progress=call_hooks)  # the caller's progress_hook


def train(task_name: str, view: str, encoder: str | None = None, *, store: str | None = None, name: str | None = None,
          options: dict[str, Any] | None = None, runner: Runner = "local", progress: ProgressFn | None = None) -> TrainSummary:
    """Train, register and summarise a head: as the train flow (``runner="local"``) or in this
    process (``inline``); ``progress(done, total)`` after each cross-validation fold or fitting step."""
    check_runner(runner, STEP_RUNNERS)  # a head trains in one task: nothing for Dask to spread

    def as_flow() -> TrainSummary:
        with progress_hook(progress):
            return train_flow(task_name, view, encoder, store=store, name=name, options=options)

    return in_flow(runner, lambda: train_and_register(task_name, view, encoder, store=store, name=name or task_name, options=options or {}, progress=progress),
                   as_flow)


def train_and_register(task_name: str, view: str, encoder: str | None = None, *, store: str | None, name: str,
                       options: dict[str, Any], progress: ProgressFn | None = None) -> TrainSummary:
    """Train, save to the registry, and return the summary the CLI prints with --json.

    ``progress(done, total)`` is called after each cross-validation fold or fitting step.
    """
    from featurestore.store import Store
    from models import registry, tasks

    started = time.perf_counter()
    result = tasks.train(task_name, view, encoder, progress=progress, store=store, **options)
    saved = registry.save_model(name, result, store=store)
    summary = TrainSummary(name=saved.name, version=saved.version, task=result.task, path=str(saved.path), metrics=result.metrics,
                           rows=result.training_manifest.rows, encoders=[e.get("encoder_id") for e in result.encoders])
    seconds = time.perf_counter() - started
    Store(store).record_run({"view": view, "encoder_id": summary.encoders[0] if summary.encoders else None,
                             "model": f"{saved.name}:{saved.version}", "task": result.task, "rows": summary.rows,
                             "metrics": registry.headline_metrics(result.metrics), "seconds": round(seconds, 3),
                             "rows_per_second": summary.rows / seconds if seconds > 0 else 0.0, "failed": 0}, kind="train")
    return summary


def artifact_markdown(summary: TrainSummary) -> str:
    """The metrics table of a trained head, as the Prefect UI shows it."""
    title = (
        f"**{summary.name} v{summary.version}** ({summary.task}, {summary.rows} rows, "
        f"encoders {', '.join(summary.encoders)})"
    )
    head = [
        title,
        "",
        "| metric | value |",
        "|---|---|",
    ]
    rows = [f"| {k} | {round(v, 4) if isinstance(v, float) else v} |" for k, v in summary.metrics.items()]
    return "\n".join(head + rows)


@flow(name="train", log_prints=False, persist_result=False)
def train_flow(task_name: str, view: str, encoder: str | None = None, *, store: str | None = None, name: str | None = None,
               options: dict[str, Any] | None = None) -> TrainSummary:
    """Train the head of ``task_name`` on ``view``, register it, publish its metrics as an artifact."""
    summary = train_task(task_name, view, encoder, store=store, name=name or task_name, options=options or {})
    create_markdown_artifact(markdown=artifact_markdown(summary), key=artifact_key("train", summary.name),
                             description=f"{summary.task} head {summary.name}")
    return summary
