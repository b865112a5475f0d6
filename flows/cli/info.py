"""``featurestore info`` and ``featurestore compact``: what the store holds, and tidying it."""

from __future__ import annotations

from typing import Optional

import typer

from flows.cli.completion import complete_view
from flows.cli.options import EncoderOpt, QuietOpt, StoreOpt, json_option
from flows.cli.output import console, print_json, print_table, set_quiet


def info(
    store: Optional[str] = StoreOpt,
    drift: bool = typer.Option(False, "--drift", help="Also measure each table's embedding drift since its previous version."),
    json_out: bool = json_option("Print one JSON object."),
    quiet: bool = QuietOpt,
) -> None:
    """Views, encoders, live row counts, table versions, last update, indexes and the newest heads."""
    set_quiet(quiet)
    from featurestore.index import index_status
    from featurestore.store import Store

    s = Store(store)
    tables = [{**t.to_dict(), "index": index_status(t, store=s)} for t in s.info()]
    if drift:
        from featurestore.drift import embedding_drift

        for t in tables:
            t["drift"] = embedding_drift(t["view"], t["encoder_id"], store=s) if (t.get("version") or 0) >= 1 else None
            t["drift_status"] = "" if not t["drift"] else (
                f"shift {t['drift']['mean_shift_relative_l2']:.3f} ks {t['drift']['norm_ks']:.3f}" + (" ALERT" if t["drift"]["alert"] else "")
            )
    heads = _newest_heads(s)
    for t in tables:
        idx = t.get("index")
        t["index_status"] = (f"{idx['factory']} {idx['coverage']:.0%} r@10 {idx['recall_at_10']}" + (f" ({idx['versions_behind']} behind)" if idx["versions_behind"] else "")) if idx and "factory" in idx and idx.get("coverage") is not None else ""
    runs = s.runs(limit=5)
    if json_out:
        where = {"work_folder": str(s.path)} if s.remote else {}
        print_json({"store": s.root, **where, "tables": tables, "models": heads, "recent_runs": runs})
        return
    title = f"store {s.root}" + (f" (work folder {s.path})" if s.remote else "")
    if not tables:
        console().print(f"{title} holds no views yet; run `featurestore materialize` first")
        return
    columns = ["view", "encoder_id", "dim", "granularity", "entities", "rows", "version", "last_update", "index_status"]
    print_table(title, tables, columns + (["drift_status"] if drift else []))
    if heads:
        from models.registry import headline_metrics

        shown = [{**h, "metrics": ", ".join(f"{k} {v:.3f}" for k, v in headline_metrics(h["metrics"]).items())} for h in heads]
        print_table("models (newest version of each)", shown, ["name", "version", "task", "rows", "metrics", "created_at"])


def _newest_heads(s) -> list[dict]:
    """The newest version of each registered model (the registry is optional: models extra)."""
    try:
        from models.registry import list_models
    except ImportError:
        return []
    newest: dict[str, dict] = {}
    for row in list_models(store=s):
        newest[row["name"]] = row
    return list(newest.values())


def compact(
    view: str = typer.Option(..., "--view", help="The view to compact.", autocompletion=complete_view),
    encoder: Optional[str] = EncoderOpt,
    vacuum: bool = typer.Option(False, "--vacuum", help="Also delete files older than the retention (default: keep them)."),
    retention_hours: int = typer.Option(168, "--retention-hours", help="Time travel kept by --vacuum."),
    store: Optional[str] = StoreOpt,
    json_out: bool = json_option("Print one JSON object: view, encoder_id, optimize (Delta's metrics), vacuumed_files, version."),
    quiet: bool = QuietOpt,
) -> None:
    """Merge a table's small files into large ones (Delta optimize), optionally vacuum."""
    from featurestore.store import Store

    set_quiet(quiet)
    table = Store(store).resolve_table(view, encoder)
    result = {"view": table.meta.view, "encoder_id": table.meta.encoder_id,
              **table.compact(vacuum=vacuum, retention_hours=retention_hours)}
    if json_out:
        print_json(result)
        return
    merged = result["optimize"]
    console().print(
        f"{result['view']} / {result['encoder_id']}: {merged.get('numFilesRemoved', 0)} file(s) merged into "
        f"{merged.get('numFilesAdded', 0)} ({merged.get('totalConsideredFiles', 0)} considered), "
        f"{result['vacuumed_files']} vacuumed; table version {result['version']}"
    )


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("compact")(compact)
