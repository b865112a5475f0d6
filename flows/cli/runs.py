"""``featurestore runs``: the store's recent materialize, index, train and refresh runs."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.completion import complete_view
from flows.cli.options import QuietOpt, StoreOpt, json_option
from flows.cli.output import console, print_json, print_table, set_quiet

KINDS = ("materialize", "index", "train", "refresh")


def runs(
    view: Optional[str] = typer.Option(None, "--view", help="Runs of this view only.", autocompletion=complete_view),
    kind: Optional[str] = typer.Option(None, "--kind", help="materialize, index, train or refresh (default: all)."),
    limit: int = typer.Option(20, "--limit", help="The newest this many runs."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON array: each run's whole record, oldest first."),
    quiet: bool = QuietOpt,
) -> None:
    """Recent runs, newest last: what each wrote (counts, rows per second, failures) and the Prefect flow run it belongs to."""
    from featurestore.errors import FeatureStoreError
    from featurestore.store import Store

    set_quiet(quiet)
    if kind is not None and kind not in KINDS:
        raise FeatureStoreError(f"--kind must be one of: {', '.join(KINDS)}. Got {kind!r} instead.")
    if limit < 1:
        raise FeatureStoreError(f"--limit must be at least 1. Got {limit} instead.")
    records = Store(store).runs(limit=limit, kinds=(kind,) if kind else KINDS, view=view)
    if json_out:
        print_json(records)
        return
    if not records:
        console().print("no runs recorded yet" + (f" for view {view}" if view else ""))
        return
    print_table("runs (newest last)", [_row(r) for r in records],
                ["finished", "kind", "view", "what", "counts", "failed", "rows/s", "seconds", "flow_run"])


def _row(record: dict) -> dict:
    kind = record.get("kind", "materialize")
    if kind == "materialize":
        what = record.get("encoder_id")
        counts = f"{record.get('encoded')} encoded, {record.get('skipped')} unchanged, {record.get('deleted', 0)} deleted; v{record.get('table_version')}"
    elif kind == "index":
        what = f"{record.get('action')} {record.get('factory')} ({record.get('encoder_id')})"
        counts = f"+{record.get('added')} -{record.get('removed')}, {record.get('rows')} rows, r@10 {record.get('recall_at_10')}; v{record.get('table_version')}"
    elif kind == "train":
        what = f"{record.get('model')} ({record.get('task')})"
        counts = f"{record.get('rows')} rows; " + ", ".join(f"{k} {v:.3f}" for k, v in (record.get("metrics") or {}).items())
    else:
        what = record.get("config")
        counts = f"{record.get('encoded')} encoded; retrained: {', '.join(record.get('retrained') or []) or 'none'}"
    rate = record.get("rows_per_second")
    return {"finished": record.get("finished_at"), "kind": kind, "view": record.get("view"), "what": what, "counts": counts,
            "failed": record.get("failed"), "rows/s": None if rate is None else f"{rate:.1f}", "seconds": record.get("seconds"),
            "flow_run": record.get("flow_run_name") or record.get("flow_run_id") or "(no Prefect)"}


def register(app: typer.Typer) -> None:
    app.command("runs")(runs)
