"""The store at a glance: one self-contained, interactive HTML page.

:func:`write_report` reads the store (it never writes to it) and renders

- an overview of every table (rows, version, last update, index coverage and recall);
- an embedding map of each view (:mod:`flows.report.views`): a 2-D projection (UMAP when
  umap-learn is installed, else PCA) of a seeded sample, coloured by label; hovering a point
  shows its id, label and text (a thumbnail for photos), clicking it lists its nearest
  neighbours from the view's index; a view of a handful of rows is a small table instead;
- each model's newest version (:mod:`flows.report.heads`): its metrics beside its baselines,
  PR curve, confusion matrix, per-type F1, per-query nDCG, frozen against fine-tuned;
- recall@10 against latency of every index (:mod:`flows.report.indexes`);
- materialize runs over time and the drift between table versions (:mod:`flows.report.history`).

Plots are plotly figures; plotly's script is inlined once in the page's head and every figure
is a div drawn by it, so the page loads nothing from the network and needs no file beside it:
it can be mailed, attached to a ticket or kept as a CI artifact. The registry is read through
:func:`models.registry.newest_records` (JSON only: no head is loaded) and the indexes through
:func:`featurestore.index.index_info` and :func:`featurestore.index.load_index`. Tables are read
at a pinned version (``as_of``), which bypasses the read cache that ``latest()`` would write.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from featurestore.errors import InvalidArgumentError, StoreError
from featurestore.params import positive_int
from featurestore.store import Store
from flows.report.page import empty, page, plotly, section, table
from flows.report.views import PROJECTIONS, Projection

__all__ = ["PROJECTIONS", "write_report"]


def write_report(
    out: str | os.PathLike[str] = "report.html",
    *,
    store: Store | str | None = None,
    sample: int = 2000,
    runs: int = 50,
    seed: int = 0,
    projection: Projection = "auto",
) -> dict[str, Any]:
    """Render the store's report and write it to ``out`` (parent folders are created).

    ``sample`` rows per view go into its map (seeded by ``seed``, so the same store gives the
    same page); ``runs`` is how many recent run records the run plots show; ``projection`` is
    ``auto`` (UMAP when umap-learn is installed, else PCA), ``umap`` or ``pca``. The page is
    written to a temporary file beside ``out`` and renamed, so a reader never sees half a page.
    Returns what was written: path, bytes, and the count of views, models, indexes, runs.
    """
    for name, value in (("sample", sample), ("runs", runs)):
        positive_int(name, value)
    if projection not in PROJECTIONS:
        raise InvalidArgumentError(f"projection must be one of: {', '.join(PROJECTIONS)}. Got {projection!r} instead.")
    s = Store.of(store)
    if s.remote is not None:
        s.remote.check_reachable()
    elif not s.path.is_dir():
        raise StoreError(f"store {s.root} does not exist; pass --store (or set FEATURESTORE_HOME) to a store made by `featurestore materialize`")
    target = Path(out)
    if target.is_dir():
        raise StoreError(f"{target} is a folder; name the report file to write, e.g. {target / 'report.html'}")
    plotly()  # a missing extra is one line before anything is read
    if projection == "umap":
        from featurestore.extras import require

        require("umap", "umap")
    from flows.report.heads import heads_section
    from flows.report.history import drift_section, runs_section
    from flows.report.indexes import indexes_section
    from flows.report.views import views_section

    views, n_views = views_section(s, sample, seed, projection)
    heads, n_heads = heads_section(s)
    indexes, n_indexes = indexes_section(s)
    recent, n_runs = runs_section(s, runs)
    sections = [
        section("overview", "Overview", _overview(s)),
        section("views", "Views: embedding maps", views),
        section("models", "Models (newest version of each)", heads),
        section("indexes", "Indexes: recall against latency", indexes),
        section("runs", "Runs and drift", recent + "<h3>drift between versions</h3>" + drift_section(s)),
    ]
    text = page(str(s.root), sections)
    _write_atomic(target, text)
    return {"path": str(target.absolute()), "bytes": len(text.encode("utf-8")), "views": n_views, "models": n_heads,
            "indexes": n_indexes, "runs": n_runs}


def _overview(s: Store) -> str:
    from featurestore.index import index_status

    rows = []
    for t in s.info():
        idx = index_status(t, store=s) or {}
        rows.append({"view": t.view, "encoder": f"{t.encoder_name} ({t.encoder_id})", "granularity": t.granularity, "dim": t.dim,
                     "entities": t.entities, "rows": t.rows, "version": t.version, "last update": t.last_update,
                     "index": idx.get("factory"), "coverage": idx.get("coverage"), "recall@10": idx.get("recall_at_10")})
    return table(rows) if rows else empty(f"the store at {s.root} holds no views yet; run `featurestore materialize` first")


def _write_atomic(target: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``target`` and rename it into place."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write the report to {target} ({exc.strerror or exc}); pass a writable --out") from None
