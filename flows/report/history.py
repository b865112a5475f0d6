"""The report's history panels: materialize runs over time (throughput, rows) and the drift of
each table between its recent versions (how far the mean vector moved, what share of the rows
changed), read at pinned versions so nothing is cached in the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from featurestore.drift import compare
from featurestore.errors import FeatureStoreError
from featurestore.store import FeatureTable, Store
from flows.report.page import PALETTE, empty, figure, plotly, table

DRIFT_VERSIONS = 5  # the newest versions of each table whose drift is plotted (each one read once)


def runs_section(s: Store, limit: int) -> tuple[str, int]:
    records = [r for r in s.runs(limit=limit) if r.get("finished_at")]
    if not records:
        return empty("no materialize runs recorded yet"), 0
    from plotly.subplots import make_subplots

    go = plotly()
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("rows encoded per second (runs that encoded rows)", "rows per run: seen in the source (dotted), encoded (diamonds)"))
    for i, key in enumerate(sorted({(r["view"], r.get("encoder_id")) for r in records})):
        mine = [r for r in records if (r["view"], r.get("encoder_id")) == key]
        colour, name = PALETTE[i % len(PALETTE)], f"{key[0]} ({key[1]})"
        times = [datetime.fromisoformat(r["finished_at"]) for r in mine]
        encoding = [(t, r) for t, r in zip(times, mine) if r.get("encoded")]
        fig.add_trace(go.Scatter(x=[t for t, _ in encoding], y=[r.get("rows_per_second") or 0.0 for _, r in encoding], mode="lines+markers",
                                 name=name, legendgroup=name, line_color=colour), row=1, col=1)
        fig.add_trace(go.Scatter(x=times, y=[r.get("rows_seen") for r in mine], mode="lines+markers", name=f"{name} seen", legendgroup=name,
                                 line={"color": colour, "dash": "dot"}, showlegend=False, hovertemplate="%{y:,} rows seen<extra></extra>"), row=2, col=1)
        fig.add_trace(go.Scatter(x=times, y=[r.get("encoded") for r in mine], mode="markers", name=f"{name} encoded", legendgroup=name,
                                 marker={"color": colour, "size": 9, "symbol": "diamond"}, showlegend=False,
                                 hovertemplate="%{y:,} rows encoded<extra></extra>"), row=2, col=1)
    fig.update_layout(height=520, legend={"orientation": "h", "y": -0.12})
    fig.update_yaxes(rangemode="tozero")
    rows = [{"finished": r.get("finished_at"), "view": r.get("view"), "encoder": r.get("encoder_id"), "seen": r.get("rows_seen"),
             "encoded": r.get("encoded"), "skipped": r.get("skipped"), "failed": r.get("failed"),
             "rows/s": round(r.get("rows_per_second") or 0.0, 1), "seconds": r.get("seconds"), "version": r.get("table_version")}
            for r in reversed(records)]
    plot = figure(fig, "plot-runs-throughput", "materialize runs over time: throughput of the runs that encoded rows (unchanged re-runs "
                  "encode none), and the rows each run saw and encoded", wide=True)
    return plot + f"<details><summary>the {len(records)} recent runs</summary>{table(rows)}</details>", len(records)


def drift_section(s: Store) -> str:
    """Per table, for each of its newest versions against the one before: the mean vector's shift
    (L2, relative to the older mean's norm, as ``featurestore drift``) and the share of changed rows."""
    series = {name: points for name, points in ((f"{t.meta.view} ({t.meta.encoder_id})", version_drift(t)) for t in s.tables()) if points}
    if not series:
        return empty("no table has two versions yet: drift compares each version with the one before")
    from plotly.subplots import make_subplots

    go = plotly()
    fig = make_subplots(rows=1, cols=2, subplot_titles=("mean vector shift (relative L2)", "share of rows added, changed or removed"))
    for i, (name, points) in enumerate(series.items()):
        colour = PALETTE[i % len(PALETTE)]
        versions = [p["version"] for p in points]
        fig.add_trace(go.Scatter(x=versions, y=[p["mean_shift"] for p in points], mode="lines+markers", name=name, legendgroup=name,
                                 line_color=colour), row=1, col=1)
        fig.add_trace(go.Scatter(x=versions, y=[p["changed_share"] for p in points], mode="lines+markers", name=name, legendgroup=name,
                                 line_color=colour, showlegend=False, customdata=[p["changed"] for p in points],
                                 hovertemplate="version %{x}: %{customdata:,} rows, %{y:.1%}<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="table version (against the one before)", dtick=1)
    fig.update_yaxes(rangemode="tozero")
    fig.update_yaxes(tickformat=".0%", row=1, col=2)
    fig.update_layout(legend={"orientation": "h", "y": -0.25})
    return figure(fig, "plot-drift", f"drift between consecutive versions (the newest {DRIFT_VERSIONS} of each table): what "
                  "`featurestore drift` reports as mean_shift_relative_l2, and the share of entities whose content changed", wide=True)


def version_drift(t: FeatureTable) -> list[dict[str, Any]]:
    """Each of the newest ``DRIFT_VERSIONS`` versions (from 1) against the one before; versions with no live rows are skipped."""
    newest = t.version()
    if not newest:
        return []
    points, before = [], None
    for version in range(max(newest - DRIFT_VERSIONS, 0), newest + 1):
        try:
            frame, state = t.latest([], as_of=version), t.state(version)
        except FeatureStoreError:  # a version whose files were vacuumed
            before = None
            continue
        if before is not None and len(before[0]) and len(frame):
            old_state = before[1]
            changed = sum(1 for k, v in state.items() if old_state.get(k, (None,))[0] != v[0]) + sum(1 for k in old_state if k not in state)
            points.append({"version": version, "mean_shift": compare(before[0].vectors, frame.vectors)["mean_shift_relative_l2"],
                           "changed": changed, "changed_share": changed / max(len(set(state) | set(old_state)), 1)})
        before = (frame, state)
    return points
