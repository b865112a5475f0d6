"""``featurestore info`` and ``featurestore compact``: what the store holds, and tidying it."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.output import console, print_json, print_table

StoreOpt = typer.Option(None, "--store", help="Store root (default: $FEATURESTORE_HOME or ~/.featurestore).")


def info(store: Optional[str] = StoreOpt, json_out: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Views, encoders, live row counts, table versions and last update."""
    from featurestore.store import Store

    s = Store(store)
    tables = [t.to_dict() for t in s.info()]
    for t in tables:
        idx = t.get("index")
        t["index_status"] = (f"{idx['factory']} {idx['coverage']:.0%} r@10 {idx['recall_at_10']}" + (f" ({idx['versions_behind']} behind)" if idx["versions_behind"] else "")) if idx and "factory" in idx and idx.get("coverage") is not None else ""
    runs = s.runs(limit=5)
    if json_out:
        print_json({"store": s.root, "tables": tables, "recent_runs": runs})
        return
    if not tables:
        console().print(f"store {s.root} holds no views yet; run `featurestore materialize` first")
        return
    print_table(f"store {s.root}", tables, ["view", "encoder_id", "dim", "granularity", "entities", "rows", "version", "last_update", "index_status"])


def compact(
    view: str = typer.Option(..., "--view", help="The view to compact."),
    encoder: Optional[str] = typer.Option(None, "--encoder", help="Encoder name or id (needed when the view has several)."),
    vacuum: bool = typer.Option(False, "--vacuum", help="Also delete files older than the retention (default: keep them)."),
    retention_hours: int = typer.Option(168, "--retention-hours", min=0, help="Time travel kept by --vacuum."),
    store: Optional[str] = StoreOpt,
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Merge a table's small files into large ones (Delta optimize), optionally vacuum."""
    from featurestore.store import Store

    result = Store(store).resolve_table(view, encoder).compact(vacuum=vacuum, retention_hours=retention_hours)
    if json_out:
        print_json(result)
    else:
        console().print(result)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("compact")(compact)
