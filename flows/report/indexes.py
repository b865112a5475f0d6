"""The report's index panel: recall@10 against query latency of every index, read through
:func:`featurestore.index.index_info` (the index.json of its current generation)."""

from __future__ import annotations

from typing import Any

from featurestore.errors import FeatureStoreError
from featurestore.index import index_info
from featurestore.index.choice import kind_of
from featurestore.store import Store
from flows.report.page import PALETTE, e, empty, figure, plotly, table


def indexes_section(s: Store) -> tuple[str, int]:
    infos, damaged = [], []
    for t in s.tables():
        try:
            info = index_info(t, store=s)
        except FeatureStoreError as exc:  # a damaged index.json: named here, the others still plotted
            damaged.append(f"{t.meta.view} / {t.meta.encoder_id}: {exc}")
            continue
        if info is not None:
            infos.append((t, info))
    notes = "".join(empty(d) for d in damaged)
    if not infos:
        return notes + empty("no indexes yet; build one with `featurestore index build`"), 0
    go = plotly()
    fig = go.Figure()
    for i, (t, info) in enumerate(infos):
        fig.add_trace(go.Scatter(x=[info.get("latency_ms", 0.0)], y=[info.get("recall_at_10", 0.0)], mode="markers+text", name=label(t, info),
                                 text=[label(t, info, short=True)], textposition="top center", textfont_size=9,
                                 marker={"size": 11, "color": PALETTE[i % len(PALETTE)]},
                                 hovertemplate=f"{e(label(t, info))}<br>{e(_params(info))}<br>recall@10 %{{y:.3f}}<br>%{{x:.3f}} ms per query<extra></extra>"))
    for target in sorted({i.get("target_recall") for _, i in infos if isinstance(i.get("target_recall"), (int, float))}):
        fig.add_hline(y=target, line={"color": "#999", "dash": "dash", "width": 1}, annotation_text=f"target {target}", annotation_font_size=9)
    fig.update_layout(xaxis={"title": "latency per query (ms, a batch of stored vectors)", "rangemode": "tozero"},
                      yaxis={"title": "recall@10 against exact search", "range": [0, 1.08]}, legend={"orientation": "h", "y": -0.2}, height=420)
    rows = [{"index": label(t, i), "factory": i.get("factory"), "params": _params(i), "rows": i.get("rows"), "recall@10": i.get("recall_at_10"),
             "latency ms": i.get("latency_ms"), "memory MB": round((i.get("memory_bytes") or 0) / 1e6, 2), "table version": i.get("table_version"),
             "build s": i.get("build_seconds")} for t, i in infos]
    plot = figure(fig, "plot-index-recall-latency", "recall@10 and latency of each index at its tuned setting; dashed: the target recall", wide=True)
    return notes + plot + table(rows), len(infos)


def label(t: Any, info: dict[str, Any], *, short: bool = False) -> str:
    """``view / encoder (id) / kind / rows``: two indexes of one view over two encoders never share a label."""
    rows = info.get("rows")
    text = f"{info.get('view')} / {t.meta.encoder_name} {info.get('encoder_id')} / {kind_of(str(info.get('factory') or ''))}"
    return text if short else f"{text} / {rows:,} rows" if isinstance(rows, int) else text


def _params(info: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in (info.get("params") or {}).items())
