"""``featurestore index build`` and ``featurestore search``: FAISS indexes and similarity queries."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from flows.cli.completion import complete_view
from flows.cli.options import BackendOpt, EncoderOpt, QuietOpt, StoreOpt, WaitOpt, json_option
from flows.cli.output import console, print_json, print_table, progress_bar, set_quiet, use_backend, use_wait

index_app = typer.Typer(help="Build FAISS indexes over views.", no_args_is_help=True)


@index_app.command("build")
def build(
    view: str = typer.Option(..., "--view", help="The view to index.", autocompletion=complete_view),
    encoder: Optional[str] = EncoderOpt,
    target_recall: float = typer.Option(0.95, "--target-recall", help="recall@10 to reach against exact search."),
    memory_budget: Optional[str] = typer.Option(None, "--memory-budget", help="e.g. 2GB: the index must fit in it."),
    index_type: str = typer.Option("auto", "--index-type", help="auto, flat, hnsw, ivf or ivfpq."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print index.json."),
    wait: Optional[float] = WaitOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Build (or rebuild) the index of a view's latest state, tuned to the target recall."""
    from dataclasses import asdict

    from featurestore.index import build_index

    set_quiet(quiet)
    use_wait(wait)
    with progress_bar(f"index build {view}") as update:
        info = build_index(view, encoder, store=store, index_type=index_type, memory_budget=memory_budget, target_recall=target_recall,
                           progress=update).info
    if json_out:
        print_json(asdict(info))
    else:
        console().print(
            f"{info.view} / {info.encoder_id}: {info.factory} over {info.rows} rows, recall@10 {info.recall_at_10:.3f} "
            f"with {info.params or 'exact search'}, {info.latency_ms:.3f} ms/query, {info.memory_bytes / 1e6:.1f} MB, "
            f"built in {info.build_seconds:.1f} s (table version {info.table_version})"
        )


@index_app.command("update")
def update(
    view: str = typer.Option(..., "--view", help="The view whose index to bring up to date.", autocompletion=complete_view),
    encoder: Optional[str] = EncoderOpt,
    rebuild_share: float = typer.Option(0.2, "--rebuild-share", help="Rebuild when more than this share was removed since the build."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON object: added, removed, rows, rebuilt, table_version ..."),
    wait: Optional[float] = WaitOpt,
    quiet: bool = QuietOpt,
) -> None:
    """Add rows committed since the index was built and remove replaced or deleted ones."""
    from featurestore.index import update_index

    set_quiet(quiet)
    use_wait(wait)
    result = update_index(view, encoder, store=store, rebuild_share=rebuild_share)
    if json_out:
        print_json(result.to_dict())
    else:
        how = "rebuilt" if result.rebuilt else "updated in place"
        console().print(f"{view}: {how}: +{result.added} -{result.removed}, {result.info.rows} rows, table version {result.info.table_version}")


def search(
    view: str = typer.Option(..., "--view", help="The view to search.", autocompletion=complete_view),
    encoder: Optional[str] = EncoderOpt,
    text: Optional[List[str]] = typer.Option(None, "--text", help="Query text (repeat for a batch)."),
    image: Optional[List[str]] = typer.Option(None, "--image", help="Query image path (repeat for a batch)."),
    entity: Optional[List[str]] = typer.Option(None, "--id", help="A stored entity id to find neighbours of (repeatable)."),
    vector_file: Optional[Path] = typer.Option(None, "--vector-file", help="A .npy file of query vectors (n, dim)."),
    k: int = typer.Option(10, "-k", "--k", help="Results per query."),
    where: Optional[str] = typer.Option(None, "--where", help="Filter on kept columns, e.g. \"label = 'spam'\"."),
    store: Optional[str] = StoreOpt,
    backend: Optional[str] = BackendOpt,
    ids_only: bool = typer.Option(False, "--ids-only", help="Each hit's entity_id and score only (no kept columns, no text read from the source)."),
    json_out: bool = json_option("Print one JSON array (a list of hits per query)."),
    quiet: bool = QuietOpt,
) -> None:
    """Find the k stored entities most similar to each query (encoded with the view's own encoder).

    Each hit shows its kept columns, and its text (or image path) read from the view's source
    when no kept column holds it; --ids-only shows ids and scores alone."""
    from featurestore.errors import SourceError
    from featurestore.index import search as run_search

    set_quiet(quiet)
    use_backend(backend)
    vectors = None
    if vector_file is not None:
        import numpy as np

        try:
            vectors = np.load(vector_file, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SourceError(f"cannot read query vectors from {vector_file}: {exc}") from None
    results = run_search(view, encoder, store=store, texts=text or None, images=image or None, ids=entity or None, vectors=vectors, k=k, where=where)
    if ids_only:
        results = [[{"entity_id": h["entity_id"], "score": h["score"]} for h in hits] for hits in results]
    elif not any(c in hit for hits in results for hit in hits for c in ("text", "path")):
        results = _with_source_content(store, view, encoder, results)
    if json_out:
        print_json(results)
        return
    for number, hits in enumerate(results, 1):
        columns = ["entity_id", "score", *[c for c in (hits[0] if hits else {}) if c not in ("entity_id", "score")]]
        print_table(f"query {number}", hits, columns)


def _with_source_content(store: Optional[str], view: str, encoder: Optional[str], results: list[list[dict]]) -> list[list[dict]]:
    """The hits with their ``text`` (or image ``path``) from the source the view's last run read,
    where its content hash is the stored one; unchanged when the source is unknown, gone or moved on."""
    from featurestore.errors import FeatureStoreError
    from featurestore.store import Store

    wanted = {hit["entity_id"] for hits in results for hit in hits}
    if not wanted:
        return results
    try:
        s = Store(store)
        table = s.resolve_table(view, encoder)
        stored = table.state()
        found = s.source_content(view, table.meta.encoder_id, {e: stored[e][0] for e in wanted if e in stored})
    except (FeatureStoreError, OSError):
        return results
    field = "path" if table.meta.granularity == "image" else "text"
    return [[{**hit, field: found[hit["entity_id"]]} if hit["entity_id"] in found else hit for hit in hits] for hits in results]


def register(app: typer.Typer) -> None:
    app.add_typer(index_app, name="index")
    app.command("search")(search)
