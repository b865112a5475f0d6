"""The refresh flow: per configured view, materialize -> index -> drift -> retrain changed heads -> artifact.

Each step does work only when its input changed, and each step that does work runs through
Prefect (the materialize, index and train flows, as subflows of ``refresh_flow``); a step with
nothing to do is a cheap check in-process: a plan scan for materialize, a version comparison
(index.json, model manifest) for the index and the heads. :func:`run_refresh`, the command
line's entry, therefore never starts Prefect when nothing changed, and publishes the refresh
artifact only when something did (Prefect is up by then).

Overlap: each view is refreshed under its write lock (:mod:`featurestore.locks`). A refresh that
finds the lock taken skips that view at once, with the holder in its summary (and in the artifact of a scheduled run),
instead of waiting: the next scheduled run picks up whatever changed meanwhile, and runs never
queue behind a slow one.

Failures: a view whose refresh fails (a source that no longer parses, an encoder that cannot
load, a crash) is reported with its reason and the other views still run; what the failed view
committed before the failure stays committed. The summary lists the failed views; the command
line then exits with an error and a scheduled run ends Failed, after publishing the artifact.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from pathlib import Path
from typing import Any

from featurestore.drift import embedding_drift
from featurestore.errors import FeatureStoreError, PrefectUnavailableError, RefreshFailed, StoreError, ViewBusyError
from featurestore.locks import view_lock
from featurestore.progress import ProgressFn, Steps
from featurestore.project import (
    HeadConfig,
    Project,
    ProjectError,
    ViewConfig,
    load_project,
)
from featurestore.store import Store
from flows.artifacts import artifact_key
from flows.runner import STEP_RUNNERS, Runner, check_runner, encoder_options, in_flow, run

__all__ = ["EncoderRefresh", "HeadRefresh", "IndexRefresh", "RefreshResult", "ViewRefresh", "artifact_markdown", "load", "refresh",
           "run_refresh"]  # and refresh_flow, made on first use

HEADLINE_METRICS = 4
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class IndexRefresh:
    """The index step of one encoder: ``status`` current (it covered the table already), built,
    rebuilt or updated; an update's ``added`` and ``removed`` rows (None for a build or a current index)."""

    status: str
    rows: int
    recall_at_10: float | None
    factory: str
    added: int | None = None
    removed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``refresh --json``: a current index has no added and removed."""
        out = {"status": self.status, "rows": self.rows, "recall_at_10": self.recall_at_10, "factory": self.factory}
        return out if self.status == "current" else {**out, "added": self.added, "removed": self.removed}


@dataclasses.dataclass(frozen=True)
class EncoderRefresh:
    """The materialize, index and drift steps of one encoder of a view. ``drift`` is
    :func:`featurestore.drift.embedding_drift`'s report, or ``skipped`` with why (None: the table did not move)."""

    encoder: str
    encoder_id: str
    rows_seen: int
    encoded: int
    skipped: int
    failed: int
    deleted: int
    table_version: int | None
    previous_version: int | None
    index: IndexRefresh | None = None
    drift: dict[str, Any] | None = None
    changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder, "encoder_id": self.encoder_id, "rows_seen": self.rows_seen, "encoded": self.encoded,
                "skipped": self.skipped, "failed": self.failed, "deleted": self.deleted, "table_version": self.table_version,
                "previous_version": self.previous_version, "index": self.index.to_dict() if self.index else None,
                "drift": self.drift, "changed": self.changed}


@dataclasses.dataclass(frozen=True)
class HeadRefresh:
    """One head of a view: ``status`` current, skipped (with ``reason``) or retrained (with
    ``reason``, the new ``version`` and its headline ``metrics``)."""

    name: str
    status: str
    reason: str | None = None
    version: int | None = None
    metrics: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``refresh --json``: the fields a status has (name and status always)."""
        out: dict[str, Any] = {"name": self.name, "status": self.status}
        for key in ("reason", "version", "metrics"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


@dataclasses.dataclass(frozen=True)
class ViewRefresh:
    """One view of a refresh: its encoders and heads; or ``skipped`` (another run held its lock,
    named here) or ``failed`` (the reason), with nothing of it changed by this refresh."""

    view: str
    encoders: list[EncoderRefresh] = dataclasses.field(default_factory=list)
    heads: list[HeadRefresh] = dataclasses.field(default_factory=list)
    changed: bool = False
    skipped: str | None = None
    failed: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``refresh --json``: a skipped or failed view has no encoders and heads."""
        if self.skipped is not None:
            return {"view": self.view, "skipped": self.skipped, "changed": self.changed}
        if self.failed is not None:
            return {"view": self.view, "failed": self.failed, "changed": self.changed}
        return {"view": self.view, "encoders": [e.to_dict() for e in self.encoders], "heads": [h.to_dict() for h in self.heads],
                "changed": self.changed}


@dataclasses.dataclass(frozen=True)
class RefreshResult:
    """What a refresh of a project file did, view by view: what ``refresh --json`` prints and the artifact shows."""

    config: str
    store: str
    views: list[ViewRefresh]
    seconds: float

    @property
    def changed(self) -> bool:
        return any(v.changed for v in self.views)

    @property
    def failed(self) -> list[str]:
        """The views whose refresh failed."""
        return [v.view for v in self.views if v.failed is not None]

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``featurestore refresh --json``."""
        return {"config": self.config, "store": self.store, "changed": self.changed, "failed": self.failed,
                "views": [v.to_dict() for v in self.views], "seconds": self.seconds}


def load(config: str | Path) -> Project:
    """The validated project: each view's encoder options checked by the encoders themselves
    (built as a materialize builds them; no weights load), each head's task and options against
    models.tasks."""
    from featurestore.encoders import get_encoder
    from models.tasks import check_options

    project = load_project(config)
    for i, view in enumerate(project.views):
        for ref in view.encoders:
            try:
                get_encoder(ref, **_materialize_options(view, ref)["encoder_options"])
            except FeatureStoreError as exc:  # the file's keys are the encoder's parameters: named without backticks
                raise ProjectError(f"{project.path}: views[{i}]: {str(exc).replace('`', '')}") from None
    for i, head in enumerate(project.heads):
        try:
            check_options(head.task, head.options)
        except FeatureStoreError as exc:  # names the task and the options it takes
            raise ProjectError(f"{project.path}: heads[{i}]: {exc}") from None
    return project


def refresh(config: str | Path, view: str | None = None, *, runner: Runner = "local", progress: ProgressFn | None = None) -> RefreshResult:
    """Refresh every view of the project (or ``view``); returns the summary the artifact shows.

    ``runner="inline"`` runs every step in this process without Prefect. ``progress(done,
    total)`` is called after each step: one per encoder of a view (materialize, index, drift)
    and one per head, a skipped or failed view's steps at once.
    """

    check_runner(runner, STEP_RUNNERS)
    started = time.perf_counter()
    project = load(config)
    views = [project.view(view)] if view else list(project.views)
    counts = [len(v.encoders) + len(project.heads_of(v)) for v in views]
    steps = Steps(progress, sum(counts))
    results = []
    for v, count in zip(views, counts):
        before = steps.done
        results.append(refresh_view(project, v, runner, steps))
        while steps.done < before + count:  # the steps a skipped or failed view did not take
            steps.tick()
    summary = RefreshResult(config=str(project.path), store=project.store_root, views=results,
                            seconds=round(time.perf_counter() - started, 3))
    if summary.changed or summary.failed:  # a refresh with nothing to do leaves the store as it was
        encoded = sum(e.encoded or 0 for r in results for e in r.encoders)
        Store(project.store_root).record_run({
            "view": ",".join(r.view for r in results), "encoder_id": None, "config": summary.config, "encoded": encoded,
            "retrained": [h.name for r in results for h in r.heads if h.status == "retrained"],
            "failed": len(summary.failed), "failures": [{"view": r.view, "reason": r.failed} for r in results if r.failed is not None],
            "seconds": summary.seconds, "rows_per_second": encoded / summary.seconds if summary.seconds > 0 else 0.0,
        }, kind="refresh")
    return summary


def failure_message(summary: RefreshResult) -> str:
    reasons = "; ".join(f"{r.view}: {r.failed}" for r in summary.views if r.failed is not None)
    return f"refresh of {summary.config} failed for {len(summary.failed)} of {len(summary.views)} view(s): {reasons}"


def refresh_view(project: Project, view: ViewConfig, runner: Runner, steps: Any = None) -> ViewRefresh:
    """One view under its lock; a view another run is writing is skipped, not waited for, and a
    view that fails is reported with its reason (user errors as they are, others with their type)."""
    try:
        return _refresh_locked_view(project, view, runner, steps)
    except PrefectUnavailableError:
        raise  # every other view would fail the same way: stop at once, with the one line that says what to do
    except FeatureStoreError as exc:
        return ViewRefresh(view.name, failed=str(exc))
    except Exception as exc:  # noqa: BLE001 - an unattended run goes on with the other views
        logger.exception("refresh of view %s failed", view.name)
        return ViewRefresh(view.name, failed=f"{type(exc).__name__}: {exc}")


def _refresh_locked_view(project: Project, view: ViewConfig, runner: Runner, steps: Any = None) -> ViewRefresh:
    def step(result: Any) -> Any:
        if steps is not None:
            steps.tick()
        return result

    try:
        with view_lock(view.name, "refresh", store=project.store_root):
            encoders = [step(_refresh_encoder(project, view, ref, runner)) for ref in view.encoders]
            tables = {e.encoder: e.encoder_id for e in encoders if e.table_version is not None}
            heads = [step(_refresh_head(project, head, tables, runner)) for head in project.heads_of(view)]
    except ViewBusyError as exc:
        return ViewRefresh(view.name, skipped=str(exc))
    changed = any(e.changed for e in encoders) or any(h.status == "retrained" for h in heads)
    return ViewRefresh(view.name, encoders=encoders, heads=heads, changed=changed)


def _refresh_encoder(project: Project, view: ViewConfig, ref: str, runner: Runner) -> EncoderRefresh:
    """Materialize the view's source with one encoder, then bring its index up and measure drift."""
    store = project.store_root
    summary = run(project.source_of(view).open(), view.name, ref, store=store, runner=runner, **_materialize_options(view, ref))
    version, previous = summary.table_version, summary.previous_version
    result = EncoderRefresh(ref, summary.encoder_id, rows_seen=summary.rows_seen, encoded=summary.encoded, skipped=summary.skipped,
                            failed=summary.failed, deleted=summary.deleted, table_version=version, previous_version=previous)
    if version is None:  # nothing stored yet (an empty source, or every row failed): nothing to index or train
        return result
    index = _refresh_index(store, view, summary.encoder_id, version, runner) if view.index else None
    drift = _drift(store, view.name, summary.encoder_id, previous, version, project.drift.alert_level) if version != previous else None
    changed = version != previous or bool(index and index.status != "current")
    return dataclasses.replace(result, index=index, drift=drift, changed=changed)


def _materialize_options(view: ViewConfig, ref: str) -> dict[str, Any]:
    """The keywords ``featurestore materialize`` would pass for this view, so both write the same table."""
    options = encoder_options(ref, granularity=view.granularity, layers=view.layers, subword=view.subword, long_text=view.long_text, tta=view.tta)
    return {"encoder_options": options, "full_sync": view.full_sync, "on_duplicate": view.on_duplicate,
            "strict": view.strict, "shard_size": view.shard_size}


def _refresh_index(store: str, view: ViewConfig, encoder_id: str, version: int | None, runner: Runner) -> IndexRefresh:
    """Update (or build) the index when it does not cover ``version``; else report the one there is."""
    from featurestore.index import IndexResult, ensure_index
    from featurestore.index.lifecycle import index_info

    s = Store(store)
    info = index_info(s.resolve_table(view.name, encoder_id), store=s)
    if info is not None and info["table_version"] == version:
        return IndexRefresh("current", rows=info["rows"], recall_at_10=info["recall_at_10"], factory=info["factory"])
    options = view.index.model_dump() if view.index else {}

    def as_flow() -> IndexResult:
        from flows.index import index_flow

        return index_flow(view.name, encoder_id, store=store, options=options)

    result = in_flow(runner, lambda: ensure_index(view.name, encoder_id, store=store, **options), as_flow)
    status = "built" if info is None else ("rebuilt" if result.rebuilt else "updated")
    return IndexRefresh(status, rows=result.info.rows, recall_at_10=result.info.recall_at_10, factory=result.info.factory,
                        added=result.added, removed=result.removed)


def _drift(store: str, view: str, encoder_id: str, base: int | None, current: int | None, alert_level: float) -> dict[str, Any]:
    """Drift from the version before this refresh; a first version has nothing to compare with."""
    if base is None or current is None:
        return {"skipped": "first version of the table: nothing to compare with"}
    try:
        return embedding_drift(view, encoder_id, store=store, base=base, current=current, alert_level=alert_level)
    except StoreError as exc:  # e.g. no live rows on one side
        return {"skipped": str(exc)}


def _refresh_head(project: Project, head: HeadConfig, tables: dict[str, str], runner: Runner) -> HeadRefresh:
    """Retrain ``head`` when its configuration changed or the tables it was trained on moved since its newest version."""
    store = project.store_root
    ref = project.head_encoder(head)
    if ref not in tables:
        return HeadRefresh(head.name, "skipped", reason=f"view {head.view} has no {ref} table yet")
    encoder_id = tables[ref]  # the table this refresh wrote: a view may hold older tables of the same encoder name
    from models.registry import needs_retrain

    reason = needs_retrain(head.name, store=store, task=head.task, view=head.view, encoder_id=encoder_id, options=dict(head.options))
    if reason is None:
        return HeadRefresh(head.name, "current")
    from flows.train import train
    from models.registry import headline_metrics

    trained = train(head.task, head.view, encoder_id, store=store, name=head.name, options=dict(head.options), runner=runner)
    metrics = headline_metrics(trained.metrics, HEADLINE_METRICS)
    return HeadRefresh(head.name, "retrained", reason=reason, version=trained.version, metrics=metrics)


def artifact_markdown(summary: RefreshResult) -> str:
    """Per view: rows encoded/skipped per encoder, index, drift and alert, heads retrained with their metrics."""
    lines = [f"**refresh** of `{summary.config}` in {summary.seconds} s", ""]
    for result in summary.views:
        lines.append(f"### {result.view}")
        if result.skipped is not None:
            lines += [f"skipped: {result.skipped}", ""]
            continue
        if result.failed is not None:
            lines += [f"**FAILED**: {result.failed}", ""]
            continue
        lines += ["| encoder | rows seen | encoded | skipped | failed | deleted | table version | index | drift |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for e in result.encoders:
            lines.append(f"| {e.encoder} ({e.encoder_id}) | {e.rows_seen} | {e.encoded} | {e.skipped} | {e.failed} "
                         f"| {e.deleted} | {e.previous_version} -> {e.table_version} | {_index_cell(e.index)} | {_drift_cell(e.drift)} |")
        for h in result.heads:
            if h.status == "current":
                lines.append(f"- head **{h.name}**: current")
            elif h.status == "skipped":
                lines.append(f"- head **{h.name}**: skipped ({h.reason})")
            else:
                metrics = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in (h.metrics or {}).items())
                lines.append(f"- head **{h.name}**: retrained as v{h.version} ({h.reason}): {metrics}")
        lines.append("")
    return "\n".join(lines)


def _index_cell(index: IndexRefresh | None) -> str:
    if index is None:
        return "not configured"
    change = f", +{index.added} -{index.removed}" if index.added is not None else ""
    return f"{index.status}: {index.rows} rows, recall@10 {index.recall_at_10}{change}"


def _drift_cell(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return "unchanged"
    if "skipped" in drift:
        return drift["skipped"]
    alert = "**ALERT**" if drift["alert"] else "ok"
    return f"mean shift {drift['mean_shift_relative_l2']}, norm KS {drift['norm_ks']}: {alert} (level {drift['alert_level']})"


def publish_artifact(summary: RefreshResult) -> None:
    from prefect.artifacts import create_markdown_artifact

    names = "-".join(v.view for v in summary.views)
    create_markdown_artifact(markdown=artifact_markdown(summary), key=artifact_key("refresh", names), description=f"refresh of {summary.config}")


def run_refresh(config: str | Path, view: str | None = None, *, runner: Runner = "local", progress: ProgressFn | None = None) -> RefreshResult:
    """The command line's refresh: Prefect starts only for steps with work; the artifact only when something changed.

    A refresh whose views only failed (a source that is gone, say) changed nothing: it does not
    start Prefect to publish that; the command line prints the failures in one line.
    """
    summary = refresh(config, view, runner=runner, progress=progress)
    if summary.changed:  # Prefect artifacts belong to a flow run: inline publishes none
        in_flow(runner, lambda: None, lambda: _summary_flow()(summary))
    return summary


@functools.cache
def _summary_flow() -> Any:
    from prefect import flow

    @flow(name="refresh-summary", log_prints=False, persist_result=False)
    def refresh_summary(summary: RefreshResult) -> None:
        """Publish the summary of a refresh whose steps ran as their own flows."""
        publish_artifact(summary)

    return refresh_summary


@functools.cache
def _refresh_flow() -> Any:
    """The Prefect flow, made on first use: importing Prefect costs more than a refresh with nothing to do."""
    from prefect import flow



    @flow(name="refresh", log_prints=False, persist_result=False)
    def refresh_flow(config: str, view: str | None = None) -> RefreshResult:
        """Refresh the project's views (or one) and publish the summary: what `featurestore serve` schedules."""
        summary = refresh(config, view)
        publish_artifact(summary)
        if summary.failed:
            raise RefreshFailed(failure_message(summary))  # the run ends Failed; the artifact says what did run
        return summary

    refresh_flow.fn.__qualname__ = "refresh_flow"  # its module path entrypoint: flows.refresh.refresh_flow
    return refresh_flow


def __getattr__(name: str) -> Any:
    """``flows.refresh.refresh_flow`` (the deployments' entrypoint) without importing Prefect with the module."""
    if name == "refresh_flow":
        return _refresh_flow()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
