"""``featurestore refresh``, ``serve`` and ``init``: run the project file once, on its schedules, or start one."""

from __future__ import annotations

from pathlib import Path

import typer

from flows.cli.options import QuietOpt, json_option
from flows.cli.output import console, print_json, progress_bar, set_quiet

ConfigOpt = typer.Option(Path("featurestore.yaml"), "--config", help="The project file (sources, views, heads, schedules).")

EXAMPLE = """\
# featurestore project file: `featurestore refresh` runs it once, `featurestore serve` on its schedules.
store: store                      # the store root, relative to this file (default: $FEATURESTORE_HOME)
sources:
  - name: sms
    path: data/SMSSpamCollection  # relative to this file
    format: sms                   # csv, tsv, jsonl, parquet, text, sms, conll, images
    id_col: "@line"
    keep: [label]
views:
  - name: sms
    source: sms
    encoders: [word2vec]          # minilm, word2vec, st:/path, w2v:/path, efficientnet-lite0 or a plugin
    granularity: sentence
    index: true                   # or {index_type: auto, memory_budget: 2GB, target_recall: 0.95}
    schedule: {interval: 3600}    # seconds, or {cron: "0 * * * *"}
heads:
  - name: sms-spam
    task: spam                    # spam, classify, image, ner, ranking
    view: sms
    options: {n_splits: 5}        # the task's training options
drift:
  alert_level: 0.1
"""


def refresh(
    config: Path = ConfigOpt,
    view: str | None = typer.Option(None, "--view", help="Refresh this view only."),
    runner: str = typer.Option("local", "--runner", help="local (Prefect flows for steps with work) or inline (no Prefect)."),
    json_out: bool = json_option("Print one JSON object with the per-view summary."),
    quiet: bool = QuietOpt,
) -> None:
    """Refresh the project's views once: materialize, index, drift, retrain the heads whose data changed."""
    from flows.prefect_api import quiet_user_errors
    from featurestore.errors import RefreshFailed
    from flows.refresh import failure_message, run_refresh

    set_quiet(quiet)
    quiet_user_errors()
    with progress_bar(f"refresh {config.name}", unit="steps") as update:
        summary = run_refresh(config, view, runner=runner, progress=update)
    if json_out:
        print_json(summary.to_dict())
    else:
        _print_summary(summary.to_dict())
    if summary.failed:
        raise RefreshFailed(failure_message(summary))


def _print_summary(summary: dict) -> None:
    for result in summary["views"]:
        if "skipped" in result:
            console().print(f"[bold]{result['view']}[/]: skipped: {result['skipped']}")
            continue
        if "failed" in result:
            console().print(f"[bold]{result['view']}[/]: [red]failed[/]: {result['failed']}")
            continue
        for e in result["encoders"]:
            index = f", index {e['index']['status']} ({e['index']['rows']} rows)" if e["index"] else ""
            alert = ", [red]drift alert[/]" if (e["drift"] or {}).get("alert") else ""
            console().print(f"[bold]{result['view']}[/] / {e['encoder_id']}: {e['encoded']} encoded, {e['skipped']} unchanged, "
                            f"table version {e['table_version']}{index}{alert}")
        for h in result["heads"]:
            shown = {"retrained": f"retrained as v{h.get('version')} ({h.get('reason')})", "skipped": f"skipped ({h.get('reason')})"}
            console().print(f"  head {h['name']}: " + shown.get(h["status"], "current"))


def serve(
    config: Path = ConfigOpt,
    limit: int | None = typer.Option(None, "--limit", help="At most this many refreshes at once (default: no limit)."),
) -> None:
    """Serve one Prefect deployment per scheduled view until interrupted.

    With PREFECT_API_URL set, the deployments go to that Prefect server; otherwise a local
    Prefect server (with its scheduler) runs as a child process while this command runs.
    Overlapping runs of one view are skipped by the view's lock.
    """
    from flows.refresh import load
    from flows.serve import serve as serve_project

    serve_project(load(config), limit=limit)


def init(
    config: Path = ConfigOpt,
    json_out: bool = json_option("Print one JSON object: the file written."),
    quiet: bool = QuietOpt,
) -> None:
    """Write an example project file (never over an existing one)."""
    from featurestore.errors import FeatureStoreError

    set_quiet(quiet)
    if config.exists():
        raise FeatureStoreError(f"{config} exists; edit it, or pass --config to write the example elsewhere")
    try:
        config.write_text(EXAMPLE, encoding="utf-8")
    except OSError as exc:
        raise FeatureStoreError(f"cannot write {config}: {exc.strerror}") from None
    if json_out:
        print_json({"written": str(config.resolve())})
        return
    console().print(f"wrote {config}: edit the source path, then run `featurestore refresh --config {config}`")


def register(app: typer.Typer) -> None:
    app.command("refresh")(refresh)
    app.command("serve")(serve)
    app.command("init")(init)
