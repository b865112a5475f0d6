"""``featurestore report``: the store's state as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.output import QuietOpt, console, print_json, set_quiet

StoreOpt = typer.Option(None, "--store", help="Store root (default: $FEATURESTORE_HOME or ~/.featurestore).")


def report(
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write (missing parent folders are created)."),
    sample: int = typer.Option(2000, "--sample", help="Rows per view in its 2-D projection (a seeded sample)."),
    store: Optional[str] = StoreOpt,
    json_out: bool = typer.Option(False, "--json", help="Print what was written as one JSON object."),
    quiet: bool = QuietOpt,
) -> None:
    """Write projections of each view, head metrics and curves, index recall/latency and run throughput."""
    from featurestore.report import write_report

    set_quiet(quiet)
    summary = write_report(out, store=store, sample=sample)
    if json_out:
        print_json(summary)
    else:
        console().print(
            f"report of {summary['views']} view(s), {summary['models']} model(s), {summary['indexes']} index(es) and "
            f"{summary['runs']} run(s) written to {summary['path']}"
        )


def register(app: typer.Typer) -> None:
    app.command("report")(report)
