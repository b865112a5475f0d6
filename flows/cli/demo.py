"""``featurestore demo``: the end-to-end demo on the default store."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.options import QuietOpt, StoreOpt, json_option
from flows.cli.output import console, print_json, say, set_quiet


def demo(
    data: Optional[str] = typer.Option(None, "--data", help="Folder of the evaluation data (default: $FEATURESTORE_DATA or ../shared/data)."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON object (runs, results, store, report); the story goes to stderr."),
    quiet: bool = QuietOpt,
) -> None:
    """The whole story: materialize -> index -> search -> train the heads -> results table -> HTML report."""
    from flows.report import write_report
    from featurestore.store import Store
    from flows.cli.info import info
    from flows.demo import run_demo
    from flows.prefect_api import quiet_user_errors

    quiet_user_errors()
    set_quiet(quiet)
    out = console()
    result = run_demo(data=data, store=store, say=say if json_out else out.print)
    root = Store(store).path
    written = write_report(root / "report.html", store=store)
    if json_out:
        print_json({**result, "store": str(root), "report": written["path"]})
        return
    out.print(f"store: {root}")
    info(store=store, drift=False, json_out=False, quiet=quiet)
    out.print(f"report: {written['path']} (open it in a browser)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
