"""``featurestore demo``: the end-to-end demo on the default store."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.output import console


def demo(
    data: Optional[str] = typer.Option(None, "--data", help="Folder of the evaluation data (default: $FEATURESTORE_DATA or ../shared/data)."),
    store: Optional[str] = typer.Option(None, "--store", help="Store root (default: $FEATURESTORE_HOME or ~/.featurestore)."),
) -> None:
    """The whole story: materialize -> index -> search -> train the heads -> results table -> HTML report."""
    from flows.report import write_report
    from featurestore.store import Store
    from flows.cli.info import info
    from flows.demo import run_demo
    from flows.prefect_api import quiet_user_errors

    quiet_user_errors()
    out = console()
    run_demo(data=data, store=store, say=out.print)
    root = Store(store).path
    out.print(f"store: {root}")
    info(store=store, json_out=False)
    written = write_report(root / "report.html", store=store)
    out.print(f"report: {written['path']} (open it in a browser)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
