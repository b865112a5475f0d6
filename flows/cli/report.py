"""``featurestore report``: the store's state as one self-contained HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.options import QuietOpt, StoreOpt, json_option
from flows.cli.output import console, print_json, set_quiet


def report(
    out: Path = typer.Option(Path("report.html"), "--out", help="The HTML file to write (missing parent folders are created)."),
    sample: int = typer.Option(2000, "--sample", help="Rows per view in its embedding map (a seeded sample)."),
    projection: str = typer.Option("auto", "--projection", help="auto (UMAP when umap-learn is installed, else PCA), umap or pca."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print what was written as one JSON object."),
    quiet: bool = QuietOpt,
) -> None:
    """Write an interactive page: an embedding map of each view (hover a point, click it for its
    neighbours), each head beside its baselines, index recall/latency, runs and drift."""
    from flows.report import write_report

    set_quiet(quiet)
    summary = write_report(out, store=store, sample=sample, projection=projection)
    if json_out:
        print_json(summary)
    else:
        console().print(
            f"report of {summary['views']} view(s), {summary['models']} model(s), {summary['indexes']} index(es) and "
            f"{summary['runs']} run(s) written to {summary['path']}"
        )


def register(app: typer.Typer) -> None:
    app.command("report")(report)
