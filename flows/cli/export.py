"""``featurestore export`` and ``featurestore drift``: features out to other tools, and how they moved."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from flows.cli.completion import complete_view
from flows.cli.output import QuietOpt, console, print_json, set_quiet

StoreOpt = typer.Option(None, "--store", help="Store root (default: $FEATURESTORE_HOME or ~/.featurestore).")


def export(
    view: str = typer.Option(..., "--view", help="The view to export.", autocompletion=complete_view),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder name or id (needed when the view has several)."),
    out: Path = typer.Option(..., "--out", help="The folder to write (emb/*.npy, metadata/*.parquet, parquet/*.parquet)."),
    as_of: Optional[str] = typer.Option(None, "--as-of", help="A table version (number) or an ISO 8601 time."),
    rows_per_file: int = typer.Option(1_000_000, "--rows-per-file", help="Rows per .npy / .parquet file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing export at --out."),
    store: Optional[str] = StoreOpt,
    json_out: bool = typer.Option(False, "--json", help="Print export.json."),
    quiet: bool = QuietOpt,
) -> None:
    """Write a view's state as Parquet + .npy in the layout embedding-reader and autofaiss read."""
    from featurestore.export import export_view

    set_quiet(quiet)
    manifest = export_view(view, encoder, out=out, store=store, as_of=as_of, rows_per_file=rows_per_file, overwrite=overwrite)
    if json_out:
        print_json(manifest)
    else:
        console().print(
            f"{manifest['rows']} rows of {manifest['view']} / {manifest['encoder_id']} (version {manifest['table_version']}, "
            f"{manifest['dim']}-d) -> {out} ({len(manifest['files'])} file(s) per folder)"
        )


def drift(
    view: str = typer.Option(..., "--view", help="The view to compare across versions.", autocompletion=complete_view),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder name or id (needed when the view has several)."),
    base: Optional[int] = typer.Option(None, "--base", help="The older version (default: the one before --current)."),
    current: Optional[int] = typer.Option(None, "--current", help="The newer version (default: the newest)."),
    alert_level: float = typer.Option(0.1, "--alert-level", help="Alert when the mean shift or the norm KS statistic passes it."),
    store: Optional[str] = StoreOpt,
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object: versions, mean shift, norm KS, alert."),
    quiet: bool = QuietOpt,
) -> None:
    """Embedding drift between two table versions: mean-vector shift and norm distribution."""
    from featurestore.drift import embedding_drift

    set_quiet(quiet)
    result = embedding_drift(view, encoder, store=store, base=base, current=current, alert_level=alert_level)
    if json_out:
        print_json(result)
        return
    console().print(
        f"{result['view']} / {result['encoder_id']} v{result['base_version']} -> v{result['current_version']}: "
        f"mean shift {result['mean_shift_relative_l2']:.4f} (relative L2), cosine {result['mean_shift_cosine']:.4f}, "
        f"norm KS {result['norm_ks']:.4f}{'  ALERT' if result['alert'] else ''}"
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
    app.command("drift")(drift)
