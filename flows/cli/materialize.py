"""``featurestore materialize``: encode a source into a view, incrementally."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.completion import complete_view
from flows.cli.options import BackendOpt, QuietOpt, StoreOpt, WaitOpt, json_option
from flows.cli.output import console, print_json, progress_bar, set_quiet, use_backend, use_wait


def materialize(
    source: str = typer.Argument(..., help="The file to read (csv, tsv, jsonl, parquet, text, sms, cranfield, beir, conll, or a folder of images)."),
    view: str = typer.Option(..., "--view", help="The feature view to write.", autocompletion=complete_view),
    encoder: str = typer.Option(..., "--encoder", help="minilm, word2vec, st:/path/to/model, w2v:/path/to/vectors or a plugin."),
    store: Optional[str] = StoreOpt,
    fmt: Optional[str] = typer.Option(None, "--format", help="csv, tsv, jsonl, parquet, text, sms, cranfield (cran.all.1400), beir (corpus.jsonl), conll or images (default: from the name; a folder is images)."),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Column of entity ids; @line for line numbers (default: ids from content)."),
    text_col: str = typer.Option("text", "--text-col", help="Column of the text to encode."),
    time_col: Optional[str] = typer.Option(None, "--time-col", help="Column of event times (ISO 8601 or epoch seconds)."),
    keep: str = typer.Option("", "--keep", help="Comma-separated columns to keep beside the vectors, e.g. label."),
    granularity: str = typer.Option("sentence", "--granularity", help="sentence (one vector per record) or token (one row per word; text encoders)."),
    layers: Optional[str] = typer.Option(None, "--layers", help="--granularity token, minilm/st: last4 (default: mean of the last four layers) or last."),
    subword: Optional[str] = typer.Option(None, "--subword", help="--granularity token, minilm/st: first (default) or mean of a word's pieces."),
    long_text: Optional[str] = typer.Option(None, "--long-text", help="Sentence vectors, minilm/st: truncate (default) texts past the model's length, or read them in windows and mean-pool every piece."),
    tta: Optional[str] = typer.Option(None, "--tta", help="Images, efficientnet-lite0: none (default, the centre crop), flip (mean with its mirror image, 2x the time) or flip5crop (centre and corner crops and their mirrors, 10x)."),
    path_col: str = typer.Option("path", "--path-col", help="For a CSV/Parquet list of images: the column of image paths."),
    no_header: bool = typer.Option(False, "--no-header", help="The CSV/TSV has no header: columns are col0, col1 ..."),
    full_sync: bool = typer.Option(False, "--full-sync", help="Tombstone entities that are missing from this source."),
    on_duplicate: str = typer.Option("error", "--on-duplicate", help="error (default) or last: what to do with repeated ids."),
    strict: bool = typer.Option(False, "--strict", help="Fail on the first bad record instead of recording it."),
    shard_size: int = typer.Option(4096, "--shard-size", help="Rows per encode task and commit."),
    device: Optional[str] = typer.Option(None, "--device", help="auto (default), cpu or cuda."),
    backend: Optional[str] = BackendOpt,
    runner: str = typer.Option("local", "--runner", help="local (Prefect flow), inline (no Prefect) or dask (shard tasks on a Dask cluster)."),
    address: Optional[str] = typer.Option(None, "--address", help="--runner dask: the scheduler, e.g. tcp://host:8786 (default: a local cluster)."),
    dask_workers: int = typer.Option(2, "--dask-workers", help="--runner dask without --address: worker processes of the local cluster."),
    dask_threads: int = typer.Option(1, "--dask-threads", help="--runner dask without --address: threads (concurrent shards) per worker."),
    json_out: bool = json_option("Print one JSON object with the run summary."),
    wait: Optional[float] = WaitOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Encode SOURCE into VIEW with ENCODER; rows already stored with the same content are skipped."""
    set_quiet(quiet)
    use_wait(wait)
    from featurestore.sources import open_source

    from flows.dask_runner import DaskOptions
    from flows.prefect_api import quiet_user_errors
    from flows.runner import encoder_options, run

    quiet_user_errors()
    use_backend(backend)
    src = open_source(
        source,
        format=fmt,
        id_col=id_col,
        text_col=text_col,
        time_col=time_col,
        keep=tuple(c.strip() for c in keep.split(",") if c.strip()) or None,
        header=not no_header,
        path_col=path_col,
    )
    options = encoder_options(encoder, granularity=granularity, layers=layers, subword=subword, long_text=long_text, tta=tta, device=device)
    with progress_bar(f"materialize {view}") as update:
        summary = run(
            src,
            view,
            encoder,
            store=store,
            runner=runner,
            dask=DaskOptions(address, dask_workers, dask_threads) if runner == "dask" or address else None,
            progress=update,
            encoder_options=options,
            full_sync=full_sync,
            on_duplicate=on_duplicate,
            strict=strict,
            shard_size=shard_size,
        )
    if json_out:
        print_json(summary.to_dict())
        return
    console().print(
        f"[bold]{summary.view}[/] / {summary.encoder_id}: {summary.rows_seen} rows seen, "
        f"{summary.encoded} encoded, {summary.skipped} unchanged, {summary.failed} failed, "
        f"{summary.deleted} deleted; table version {summary.table_version} in {summary.seconds:.1f} s"
    )
    for failure in summary.failures[:5]:
        console().print(f"  line {failure['line']}: {failure['reason']}")


def register(app: typer.Typer) -> None:
    app.command("materialize")(materialize)
