"""The store at a glance: one self-contained HTML page with the plots people look at.

:func:`write_report` reads the store (it never writes to it) and renders

- an overview of every table (rows, version, last update, index coverage and recall);
- a 2-D PCA projection of a seeded sample of each view's latest vectors, coloured by its
  ``label`` column (``ner_tags`` for token views; else the first kept text column with few
  distinct values);
- each model's newest version: its metrics and the plots its ``report.json`` supports (PR curve,
  confusion matrix, per-type F1 for NER, nDCG@10 of the ranking systems);
- recall@10 against query latency of every index: the point its tuning stopped at, which is
  all ``index.json`` keeps;
- rows per second of recent materialize runs, per view, over time.

Plots are matplotlib figures inlined as SVG: the page loads nothing from the network, runs no
script and needs no file beside it, so it can be mailed, attached to a ticket or kept as a CI
artifact. Tables are read at a pinned version (``as_of``), which bypasses the read cache that
``latest()`` would write under ``_cache/``. Models are read as the JSON files of the registry
layout (``models/<name>/<version>/manifest.json`` and ``report.json``, see
``models.registry``): nothing is unpickled and this module needs nothing from ``models/``.
"""

from __future__ import annotations

import html
import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from featurestore.encoders.base import require
from featurestore.errors import StoreError
from featurestore.params import positive_int
from featurestore.store import Store
from featurestore.store.schema import SYSTEM_COLUMNS
from featurestore.store.table import FeatureTable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["write_report"]

MAX_COLOURS = 10  # tab10: the top 9 values keep a colour, the rest share grey as "other"
COLOUR_COLUMN_MAX_VALUES = 20  # a kept column with more distinct values is an id or a text, not a class
TOKEN_LAYOUT = ("token_index", "token", "char_start", "char_end", "oov")
_RC = {"svg.fonttype": "none", "svg.hashsalt": "featurestore-report", "font.size": 9}
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }
figure.plot { display: inline-block; margin: 0.5em; vertical-align: top; }
figure.plot svg { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; }
p.empty { color: #777; font-style: italic; }
"""


def write_report(
    out: str | os.PathLike[str] = "report.html",
    *,
    store: Store | str | None = None,
    sample: int = 2000,
    runs: int = 50,
    seed: int = 0,
) -> dict[str, Any]:
    """Render the store's report and write it to ``out`` (parent folders are created).

    ``sample`` rows per view go into its projection (seeded by ``seed``, so the same store gives
    the same plots); ``runs`` is how many recent run records the throughput plot shows. The page
    is written to a temporary file beside ``out`` and renamed, so a reader never sees half a
    page. Returns what was written: path, bytes, and the count of views, models, indexes, runs.
    """
    for name, value in (("sample", sample), ("runs", runs)):
        positive_int(name, value)
    s = store if isinstance(store, Store) else Store(store)
    if s.remote is not None:
        s.remote.check_reachable()
    elif not s.path.is_dir():
        raise StoreError(f"store {s.root} does not exist; pass `store` (or set FEATURESTORE_HOME) to a store made by `featurestore materialize`")
    target = Path(out)
    if target.is_dir():
        raise StoreError(f"{target} is a folder; name the report file to write, e.g. {target / 'report.html'}")
    matplotlib = require("matplotlib", "report")
    with matplotlib.rc_context(_RC):
        views, n_views = _views_section(s, sample, seed)
        heads, n_heads = _heads_section(s)
        indexes, n_indexes = _indexes_section(s)
        recent, n_runs = _runs_section(s, runs)
    page = _page(s, [_overview_section(s), views, heads, indexes, recent])
    _write_atomic(target, page)
    return {"path": str(target.absolute()), "bytes": len(page.encode("utf-8")), "views": n_views,
            "models": n_heads, "indexes": n_indexes, "runs": n_runs}


# ------------------------------------------------------------------------------ sections


def _overview_section(s: Store) -> str:
    rows = []
    for t in s.info():
        idx = t.index or {}
        rows.append({"view": t.view, "encoder": f"{t.encoder_name} ({t.encoder_id})", "granularity": t.granularity, "dim": t.dim,
                     "entities": t.entities, "rows": t.rows, "version": t.version, "last update": t.last_update,
                     "index": idx.get("factory"), "coverage": idx.get("coverage"), "recall@10": idx.get("recall_at_10")})
    body = _table(rows) if rows else _empty(f"the store at {s.root} holds no views yet; run `featurestore materialize` first")
    return _section("overview", "Overview", body)


def _views_section(s: Store, sample: int, seed: int) -> tuple[str, int]:
    tables = s.tables()
    plots = [_view_plot(t, sample, seed) for t in tables]
    body = "".join(plots) if plots else _empty("no views yet")
    return _section("views", "Views: 2-D projection (PCA)", body), len(plots)


def _view_plot(table: FeatureTable, sample: int, seed: int) -> str:
    """A PCA scatter of up to ``sample`` live rows, read at the table's version (no cache write).

    The latest state is read whole before sampling: memory holds the view's vectors while its
    plot is drawn.
    """
    meta = table.meta
    dt = table.delta()
    version = int(dt.version())
    kept = [f.name for f in dt.schema().fields if f.name not in SYSTEM_COLUMNS and f.name not in TOKEN_LAYOUT]
    frame = table.latest(kept, as_of=version)
    rows = _sample_rows(len(frame), sample, seed)
    vectors = frame.vectors[rows]
    columns = frame.columns.take(pa.array(rows, pa.int64()))
    column = _colour_column(columns, meta.granularity)
    labels = columns.column(column).to_pylist() if column else None
    what = "tokens" if meta.granularity == "token" else "rows"
    caption = f"{meta.view} / {meta.encoder_name} ({meta.encoder_id}), version {version}: {len(rows)} of {len(frame)} {what}" + (
        f", coloured by {column}" if column else "")
    fig = _figure(5.5, 4.2)
    ax = fig.add_subplot()
    if len(rows) == 0:
        ax.text(0.5, 0.5, "no live rows", ha="center", va="center", transform=ax.transAxes)
    else:
        points, share = _pca_2d(vectors)
        _scatter(ax, points, labels)
        ax.set_xlabel(f"PC1 ({share[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({share[1]:.0%} of variance)")
    ax.set_title(f"{meta.view} / {meta.encoder_name}")
    return _svg(fig, f"plot-view-{meta.view}-{meta.encoder_id}", caption)


def _sample_rows(n: int, sample: int, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded sample without replacement (all rows when n <= sample)."""
    if n <= sample:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False)).astype(np.int64)


def _colour_column(columns: pa.Table, granularity: str) -> str | None:
    """``ner_tags`` for tokens, ``label`` when kept, else the first text column with few values."""
    preferred = ("ner_tags", "label") if granularity == "token" else ("label",)
    for name in preferred:
        if name in columns.column_names:
            return name
    for name in columns.column_names:
        col = columns.column(name)
        if (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) and len(set(col.to_pylist())) <= COLOUR_COLUMN_MAX_VALUES:
            return name
    return None


def _pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``(n, 2)`` coordinates on the top two principal axes and their share of the variance.

    The eigenvectors of the ``(dim, dim)`` scatter matrix of the centred sample: a few thousand
    rows need no scikit-learn (a core install does not have it), and ``eigh`` of a small square
    matrix costs far less than an SVD of the sample itself.
    """
    x = np.asarray(vectors, dtype=np.float64)
    x = x - x.mean(axis=0)
    variance, axes = np.linalg.eigh(x.T @ x)  # ascending
    top = axes[:, ::-1][:, :2]
    points = np.zeros((len(x), 2))
    points[:, : top.shape[1]] = x @ top
    total = float(variance.sum())
    share = [max(float(v), 0.0) / total if total > 0 else 0.0 for v in variance[::-1][:2]] + [0.0, 0.0]
    return points, (share[0], share[1])


def _scatter(ax: Any, points: np.ndarray, labels: Sequence[Any] | None) -> None:
    """One colour per frequent label (legend with counts), the rest grey as "other"."""
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.6, linewidths=0)
        return
    names = ["(none)" if v is None else str(v) for v in labels]
    counts = Counter(names).most_common()
    shown = [name for name, _ in counts[: MAX_COLOURS - 1]] if len(counts) > MAX_COLOURS else [name for name, _ in counts]
    groups = [(name, np.array([n == name for n in names])) for name in shown]
    if len(counts) > len(shown):
        groups.append(("other", ~np.isin(np.array(names, dtype=object), shown)))
    for i, (name, mask) in enumerate(groups):
        colour = "#999999" if name == "other" else f"C{i}"
        ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.6, linewidths=0, color=colour, label=f"{name} ({int(mask.sum())})")
    ax.legend(loc="best", fontsize=7, markerscale=2, frameon=False)


def _heads_section(s: Store) -> tuple[str, int]:
    parts = [_head_part(folder) for folder in _model_folders(s)]
    body = "".join(parts) if parts else _empty("no models in the registry yet; train one with `featurestore train`")
    return _section("models", "Models (newest version of each)", body), len(parts)


def _model_folders(s: Store) -> list[Path]:
    """The newest version folder of each model in the registry."""
    base = s.fetch("models", marker="manifest.json", names=("manifest.json", "report.json", "evaluations.json"))
    newest = []
    for folder in sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        versions = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
        if versions:
            newest.append(folder / str(versions[-1]))
    return newest


def _head_part(folder: Path) -> str:
    """The metrics table and the plots of one model version; a version that cannot be read says so."""
    name, version = folder.parent.name, folder.name
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        report = json.loads((folder / "report.json").read_text())
    except (OSError, ValueError, RecursionError) as exc:
        return f"<h3>{_e(name)} v{_e(version)}</h3>" + _empty(f"cannot be read ({exc}); retrain it")
    if not isinstance(manifest, dict) or not isinstance(report, dict):
        return f"<h3>{_e(name)} v{_e(version)}</h3>" + _empty("manifest.json or report.json is not a JSON object; retrain it")
    slug = f"{name}-{version}"
    plots = []
    if report.get("pr_curve"):
        plots.append(_pr_curve(report, slug))
    if report.get("confusion_matrix"):
        plots.append(_confusion(report, slug))
    if report.get("systems"):
        plots.append(_bars([(k, v.get("ndcg@10", 0.0)) for k, v in report["systems"].items()], "nDCG@10 (held-out queries)", f"plot-ranking-{slug}", "nDCG@10 of BM25, dense retrieval and the re-ranker"))
    if report.get("per_type"):
        plots.append(_bars([(k, v.get("f1", 0.0)) for k, v in report["per_type"].items()], "entity F1 per type", f"plot-ner-{slug}", "F1 per entity type (seqeval)"))
    metrics = [{"metric": k, "value": round(v, 4) if isinstance(v, float) else v} for k, v in (manifest.get("metrics") or {}).items()]
    title = f"{name} v{version}: {manifest.get('task')}, {manifest.get('training_set', {}).get('rows')} rows, created {manifest.get('created_at')}"
    return f'<div class="model" id="model-{_e(slug)}"><h3>{_e(title)}</h3>{_table(metrics)}{_choice(manifest)}{"".join(plots)}{_evaluations(folder)}</div>'


def _choice(manifest: dict[str, Any]) -> str:
    """How the head was chosen, when it was: each candidate's cross-validated score and why."""
    choice = manifest.get("head_choice")
    if not isinstance(choice, dict) or not isinstance(choice.get("candidates"), list):
        return ""
    metric = str(choice.get("metric", "score"))
    rows = [{"head": c.get("head"), f"CV {metric}": round(c[metric], 4) if isinstance(c.get(metric), float) else "",
             "chosen": "yes" if c.get("head") == choice.get("chosen") else ""} for c in choice["candidates"] if isinstance(c, dict)]
    return f"<p>head {_e(choice.get('chosen'))} (asked: {_e(choice.get('asked'))}): {_e(choice.get('reason'))}</p>{_table(rows)}"


def _evaluations(folder: Path) -> str:
    """The version's scores on new labelled data (``evaluations.json``, from ``featurestore evaluate --input``)."""
    path = folder / "evaluations.json"
    if not path.is_file():
        return ""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        return "<h4>evaluated on new data</h4>" + _empty(f"evaluations.json cannot be read ({exc}); evaluate again")
    parts = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict):
            continue
        baselines = {k: v for k, v in (entry.get("baselines") or {}).items() if isinstance(v, dict) and "skipped" not in v}
        rows = [{"metric": k, "head": round(v, 4), **{b: round(x[k], 4) if isinstance(x.get(k), float) else "" for b, x in baselines.items()}}
                for k, v in entry["metrics"].items() if isinstance(v, float)]
        parts.append(f"<p>{_e(entry.get('rows'))} rows of <code>{_e(entry.get('input'))}</code>, {_e(entry.get('evaluated_at'))}</p>{_table(rows)}")
    return "<h4>evaluated on new data</h4>" + ("".join(parts) or _empty("evaluations.json holds no evaluation; evaluate again"))


def _pr_curve(report: dict[str, Any], slug: str) -> str:
    curve = report["pr_curve"]
    fig = _figure(4.2, 3.6)
    ax = fig.add_subplot()
    ax.plot([p["recall"] for p in curve], [p["precision"] for p in curve], marker=".", markersize=3)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02), title="precision-recall (out of fold)")
    ap = report.get("average_precision")
    return _svg(fig, f"plot-pr-{slug}", "PR curve" + (f", average precision {ap:.3f}" if isinstance(ap, float) else ""))


def _confusion(report: dict[str, Any], slug: str) -> str:
    matrix = np.asarray(report["confusion_matrix"])
    classes = report.get("classes") or [str(i) for i in range(len(matrix))]
    fig = _figure(max(3.6, 0.5 * len(classes) + 2), max(3.2, 0.5 * len(classes) + 1.6))
    ax = fig.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix")
    limit = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > limit else "black", fontsize=8)
    return _svg(fig, f"plot-confusion-{slug}", "confusion matrix (rows: true class)")


def _bars(values: list[tuple[str, float]], ylabel: str, plot_id: str, caption: str) -> str:
    fig = _figure(4.2, 3.4)
    ax = fig.add_subplot()
    ax.bar([k for k, _ in values], [v for _, v in values], color=[f"C{i}" for i in range(len(values))])
    ax.set(ylabel=ylabel, ylim=(0, 1))
    ax.tick_params(axis="x", labelrotation=30)
    return _svg(fig, plot_id, caption)


def _indexes_section(s: Store) -> tuple[str, int]:
    infos = []
    for table in s.tables():
        _, text = s.read_current(f"indexes/{Path(table.uri).parent.name}/{Path(table.uri).name}", "index.json")
        if text is None:
            continue
        try:
            infos.append(json.loads(text))
        except ValueError:
            continue  # a damaged index.json is reported by `featurestore info`; the plot shows the others
    if not infos:
        return _section("indexes", "Indexes: recall against latency", _empty("no indexes yet; build one with `featurestore index build`")), 0
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    for i, info in enumerate(infos):
        ax.scatter([info.get("latency_ms", 0.0)], [info.get("recall_at_10", 0.0)], color=f"C{i % MAX_COLOURS}", s=30,
                   label=f"{info.get('view')} {info.get('factory')} {_params(info)}")
    for target in sorted({i.get("target_recall") for i in infos if i.get("target_recall")}):
        ax.axhline(target, color="#999999", linestyle="--", linewidth=0.8)
    ax.set(xlabel="latency per query (ms, batch of stored vectors)", ylabel="recall@10 vs exact search", xlim=(0, None), ylim=(0, 1.05),
           title="recall against latency at the tuned setting")
    ax.legend(loc="lower right", fontsize=7, frameon=False)
    rows = [{"view": i.get("view"), "encoder": i.get("encoder_id"), "factory": i.get("factory"), "params": _params(i), "rows": i.get("rows"),
             "recall@10": i.get("recall_at_10"), "latency ms": i.get("latency_ms"), "memory MB": round(i.get("memory_bytes", 0) / 1e6, 2),
             "table version": i.get("table_version"), "build s": i.get("build_seconds")} for i in infos]
    body = _svg(fig, "plot-index-recall-latency", "recall@10 and latency of each index; dashed: the target recall") + _table(rows)
    return _section("indexes", "Indexes: recall against latency", body), len(infos)


def _time_axis(ax: Any, times: list[datetime]) -> None:
    """Readable date ticks, and at least two minutes of axis: runs seconds apart would otherwise
    make matplotlib widen a near-empty range to years."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    pad = max((max(times) - min(times)) * 0.05, timedelta(minutes=1))
    ax.set_xlim(min(times) - pad, max(times) + pad)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def _params(info: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in (info.get("params") or {}).items())


def _runs_section(s: Store, limit: int) -> tuple[str, int]:
    records = [r for r in s.runs(limit=limit) if r.get("finished_at")]
    if not records:
        return _section("runs", "Recent runs: throughput", _empty("no materialize runs recorded yet")), 0
    encoding = [r for r in records if r.get("encoded")]
    if encoding:
        fig = _figure(6.5, 3.6)
        ax = fig.add_subplot()
        for key in sorted({(r["view"], r.get("encoder_id")) for r in encoding}):
            mine = [r for r in encoding if (r["view"], r.get("encoder_id")) == key]
            ax.plot([datetime.fromisoformat(r["finished_at"]) for r in mine], [r.get("rows_per_second", 0.0) for r in mine],
                    marker="o", label=f"{key[0]} ({key[1]})")
        ax.set(ylabel="rows encoded per second", title="materialize throughput", ylim=(0, None))
        _time_axis(ax, [datetime.fromisoformat(r["finished_at"]) for r in encoding])
        ax.legend(loc="best", fontsize=7, frameon=False)
        plot = _svg(fig, "plot-runs-throughput", "rows per second of runs that encoded rows (unchanged re-runs encode none)")
    else:
        plot = _empty("no recent run encoded rows (every one found its data unchanged)")
    rows = [{"finished": r.get("finished_at"), "view": r.get("view"), "encoder": r.get("encoder_id"), "encoded": r.get("encoded"),
             "skipped": r.get("skipped"), "failed": r.get("failed"), "rows/s": round(r.get("rows_per_second") or 0.0, 1),
             "seconds": r.get("seconds"), "version": r.get("table_version")} for r in reversed(records)]
    return _section("runs", "Recent runs: throughput", plot + _table(rows)), len(records)


# ------------------------------------------------------------------------------ HTML


def _figure(width: float, height: float) -> Figure:
    """A figure without pyplot: no global state, no GUI backend, nothing to close."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _svg(fig: Figure, plot_id: str, caption: str) -> str:
    """The figure as inline SVG inside a ``<figure class="plot">``.

    Every id in the SVG gets the plot's id as prefix: matplotlib numbers ids per figure
    (``figure_1``, ``axes_1``), so two figures on one page would otherwise share ids and a
    ``url(#...)`` or ``href="#..."`` could resolve into the wrong plot.
    """
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    svg = text[text.index("<svg") :]
    prefix = _e(plot_id.replace(" ", "_"))
    svg = svg.replace(' id="', f' id="{prefix}-').replace("url(#", f"url(#{prefix}-").replace('href="#', f'href="#{prefix}-')
    svg = svg.replace("<svg ", f'<svg class="plot-svg" data-plot="{prefix}" ', 1)
    return f'<figure class="plot" id="{prefix}">{svg}<figcaption>{_e(caption)}</figcaption></figure>'


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return _empty("nothing recorded")
    columns = list(rows[0])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_e('' if r.get(c) is None else r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>{body}</section>'


def _empty(message: str) -> str:
    return f'<p class="empty">{_e(message)}</p>'


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(s: Store, sections: list[str]) -> str:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    nav = " · ".join(f'<a href="#{k}">{k}</a>' for k in ("overview", "views", "models", "indexes", "runs"))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>featurestore report: {_e(s.root)}</title><style>{_CSS}</style></head>"
        f"<body><h1>featurestore report</h1><p>store <code>{_e(s.root)}</code>, written {now}</p><nav>{nav}</nav>"
        + "".join(sections)
        + "</body></html>\n"
    )


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
        raise StoreError(f"cannot write the report to {target} ({exc.strerror or exc}); pass a writable `out`") from None
