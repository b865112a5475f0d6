"""The report's model panels: the newest version of each head, read through the registry as JSON
(:func:`models.registry.newest_records`: no head file is loaded).

Each panel holds the head's metrics beside its baselines in one chart, and whichever of these
its ``report.json`` records: the PR curve, the confusion matrix, per-type F1 (NER), per-query
nDCG@10 (ranking), the frozen head against the fine-tuned one with training times, the
cross-validated head choice and the scores on new data (``evaluations.json``).
"""

from __future__ import annotations

from typing import Any

from flows.report.page import PALETTE, e, empty, figure, plotly, table
from models.registry import newest_records

# The metrics a head and its baselines are compared on, in this order, where both record them.
METRICS = ("f1", "precision", "recall", "accuracy", "macro_f1", "roc_auc", "average_precision", "ndcg@10", "mrr@10", "recall@100")


def heads_section(s: Any) -> tuple[str, int]:
    records = newest_records(store=s)
    parts = [head_panel(r) for r in records]
    return ("".join(parts) if parts else empty("no models in the registry yet; train one with `featurestore train`")), len(parts)


def head_panel(record: dict[str, Any]) -> str:
    name, version = record["name"], record["version"]
    slug = f"{name}-{version}"
    if "error" in record:
        return f'<div class="model" id="model-{e(slug)}"><h3>{e(name)} v{e(version)}</h3>{empty(record["error"])}</div>'
    manifest, report = record["manifest"], record["report"]
    plots = []
    compared = systems(manifest, report)
    if len(compared) > 1:
        plots.append(_grouped_bars(compared, f"plot-baselines-{slug}", "score", f"{name}: the head's metrics beside its baselines (same folds, same rows)"))
    if isinstance(report.get("pr_curve"), list) and report["pr_curve"]:
        plots.append(_pr_curve(report, slug))
    if report.get("confusion_matrix"):
        plots.append(_confusion(report, slug))
    if isinstance(report.get("per_type"), dict) and report["per_type"]:
        plots.append(_per_type(report, slug))
    if isinstance(report.get("per_query_ndcg@10"), dict) and report["per_query_ndcg@10"]:
        plots.append(_per_query(report["per_query_ndcg@10"], slug))
    if isinstance(report.get("frozen"), dict) and isinstance(report.get("finetuned"), dict):
        plots.append(_finetune(report, slug))
    metrics = [{"metric": k, "value": round(v, 4) if isinstance(v, float) else v} for k, v in (manifest.get("metrics") or {}).items()]
    rows = (manifest.get("training_set") or {}).get("rows") if isinstance(manifest.get("training_set"), dict) else None
    title = f"{name} v{version}: {manifest.get('task')}, {rows} rows, created {manifest.get('created_at')}"
    return (f'<div class="model" id="model-{e(slug)}"><h3>{e(title)}</h3>{"".join(plots)}<details><summary>every metric</summary>'
            f"{table(metrics)}</details>{_choice(manifest)}{_evaluations(record['evaluations'])}</div>")


def systems(manifest: dict[str, Any], report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{system: {metric: value}}``: the head first, then each baseline it was reported with."""
    if isinstance(report.get("systems"), dict):  # ranking: the re-ranker, BM25 and dense retrieval
        found = {k: v for k, v in report["systems"].items() if isinstance(v, dict)}
        order = sorted(found, key=lambda k: k != "reranker")
        return {("re-ranker (this head)" if k == "reranker" else k): _numbers(found[k]) for k in order}
    if isinstance(report.get("frozen"), dict) and isinstance(report.get("finetuned"), dict):
        k = report.get("unfreeze_last")
        return {f"fine-tuned (last {k} layers)": _numbers(report["finetuned"]), "frozen encoder + logistic": _numbers(report["frozen"])}
    choice = manifest.get("head_choice") if isinstance(manifest.get("head_choice"), dict) else {}
    head = f"head: {choice['chosen']}" if choice.get("chosen") else "this head"
    out = {head: _numbers(report)}
    for key, baseline in (report.get("baselines") or {}).items() if isinstance(report.get("baselines"), dict) else []:
        if isinstance(baseline, dict) and "skipped" not in baseline:
            out[str(baseline.get("name") or key)] = _numbers(baseline)
    if isinstance(report.get("majority_accuracy"), float):
        out["majority class"] = {"accuracy": report["majority_accuracy"]}
    return out


def _numbers(values: dict[str, Any]) -> dict[str, float]:
    return {m: float(values[m]) for m in METRICS if isinstance(values.get(m), (int, float)) and not isinstance(values.get(m), bool)}


def _grouped_bars(compared: dict[str, dict[str, float]], plot_id: str, ytitle: str, caption: str) -> str:
    go = plotly()
    head = next(iter(compared.values()))
    metrics = [m for m in METRICS if m in head]
    fig = go.Figure([go.Bar(name=name, x=[m for m in metrics if m in values], y=[values[m] for m in metrics if m in values],
                            marker_color=PALETTE[i % len(PALETTE)], hovertemplate=f"{e(name)}<br>%{{x}} %{{y:.3f}}<extra></extra>")
                     for i, (name, values) in enumerate(compared.items())])
    fig.update_layout(barmode="group", yaxis={"title": ytitle, "range": [0, 1.1]}, legend={"orientation": "h", "y": -0.15})
    return figure(fig, plot_id, caption)


def _pr_curve(report: dict[str, Any], slug: str) -> str:
    go = plotly()
    curve = [p for p in report["pr_curve"] if isinstance(p, dict)]
    fig = go.Figure(go.Scatter(x=[p.get("recall") for p in curve], y=[p.get("precision") for p in curve], mode="lines+markers",
                               marker_size=4, customdata=[p.get("threshold") for p in curve],
                               hovertemplate="recall %{x:.3f}<br>precision %{y:.3f}<br>threshold %{customdata:.3f}<extra></extra>"))
    fig.update_layout(xaxis={"title": "recall", "range": [0, 1.02]}, yaxis={"title": "precision", "range": [0, 1.02]},
                      title={"text": "precision-recall (out of fold)", "font": {"size": 12}})
    ap = report.get("average_precision")
    return figure(fig, f"plot-pr-{slug}", "PR curve" + (f", average precision {ap:.3f}" if isinstance(ap, float) else "") + "; hover for the threshold")


def _confusion(report: dict[str, Any], slug: str) -> str:
    go = plotly()
    matrix = report["confusion_matrix"]
    classes = [str(c) for c in report.get("classes") or range(len(matrix))]
    fig = go.Figure(go.Heatmap(z=matrix, x=classes, y=classes, colorscale="Blues", text=matrix, texttemplate="%{text}",
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z} rows<extra></extra>", showscale=False))
    fig.update_layout(xaxis_title="predicted", yaxis={"title": "true", "autorange": "reversed"}, title={"text": "confusion matrix", "font": {"size": 12}})
    return figure(fig, f"plot-confusion-{slug}", "confusion matrix (rows: true class, out of fold)")


def _per_type(report: dict[str, Any], slug: str) -> str:
    """Entity F1 per type, the head beside the dictionary baseline."""
    compared = {"this head": report["per_type"]}
    for name, baseline in (report.get("baselines") or {}).items():
        if isinstance(baseline, dict) and isinstance(baseline.get("per_type"), dict):
            compared[name] = baseline["per_type"]
    go = plotly()
    types = sorted(t for t in report["per_type"] if isinstance(report["per_type"][t], dict))
    fig = go.Figure([go.Bar(name=name, x=types, y=[(values.get(t) or {}).get("f1", 0.0) for t in types], marker_color=PALETTE[i % len(PALETTE)])
                     for i, (name, values) in enumerate(compared.items())])
    fig.update_layout(barmode="group", yaxis={"title": "entity F1", "range": [0, 1]}, legend={"orientation": "h", "y": -0.15})
    return figure(fig, f"plot-ner-{slug}", "F1 per entity type (seqeval), beside the dictionary baseline")


def _per_query(per_query: dict[str, Any], slug: str) -> str:
    """Each held-out query's nDCG@10: the re-ranker against each baseline (above the diagonal: the re-ranker wins)."""
    go = plotly()
    queries = [q for q, v in per_query.items() if isinstance(v, dict)]
    fig = go.Figure([go.Scatter(x=[per_query[q].get(base) for q in queries], y=[per_query[q].get("reranker") for q in queries], mode="markers",
                                name=f"vs {base}", text=queries, marker={"size": 6, "opacity": 0.7, "color": PALETTE[i]},
                                hovertemplate=f"query %{{text}}<br>{base} %{{x:.3f}}<br>re-ranker %{{y:.3f}}<extra></extra>")
                     for i, base in enumerate(("bm25", "dense"))])
    fig.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line={"color": "#999", "dash": "dash", "width": 1})
    fig.update_layout(xaxis={"title": "baseline nDCG@10", "range": [-0.02, 1.02]}, yaxis={"title": "re-ranker nDCG@10", "range": [-0.02, 1.02]})
    wins = sum(1 for q in queries if (per_query[q].get("reranker") or 0) > max(per_query[q].get("bm25") or 0, per_query[q].get("dense") or 0))
    return figure(fig, f"plot-queries-{slug}", f"nDCG@10 per held-out query ({len(queries)}); the re-ranker beats both baselines on {wins}; hover for the query id")


def _finetune(report: dict[str, Any], slug: str) -> str:
    """Fine-tuned against frozen: their metrics, and the seconds each took to train."""
    from plotly.subplots import make_subplots

    go = plotly()
    frozen, tuned = report["frozen"], report["finetuned"]
    sides = {"frozen": frozen, f"fine-tuned (last {report.get('unfreeze_last')})": tuned}
    metrics = [m for m in METRICS if isinstance(frozen.get(m), float) and isinstance(tuned.get(m), float)]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.65, 0.35], subplot_titles=("metrics", "training seconds"))
    for i, (name, side) in enumerate(sides.items()):
        fig.add_trace(go.Bar(name=name, x=metrics, y=[side[m] for m in metrics], marker_color=PALETTE[i], legendgroup=name), row=1, col=1)
        fig.add_trace(go.Bar(name=name, x=[name], y=[side.get("train_seconds", 0.0)], marker_color=PALETTE[i], legendgroup=name, showlegend=False),
                      row=1, col=2)
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.15})
    fig.update_yaxes(range=[0, 1.05], row=1, col=1)
    caption = (f"frozen encoder + logistic regression vs fine-tuning the last {report.get('unfreeze_last')} layers, same folds: "
               f"{frozen.get('train_seconds')} s vs {tuned.get('train_seconds')} s to train (the fine-tuned side includes "
               f"{tuned.get('cache_seconds')} s for one pass of the frozen layers)")
    return figure(fig, f"plot-finetune-{slug}", caption)


def _choice(manifest: dict[str, Any]) -> str:
    """How the head was chosen, when it was: each candidate's cross-validated score and why."""
    choice = manifest.get("head_choice")
    if not isinstance(choice, dict) or not isinstance(choice.get("candidates"), list):
        return ""
    metric = str(choice.get("metric", "score"))
    rows = [{"head": c.get("head"), f"CV {metric}": round(c[metric], 4) if isinstance(c.get(metric), float) else "",
             "chosen": "yes" if c.get("head") == choice.get("chosen") else ""} for c in choice["candidates"] if isinstance(c, dict)]
    return f"<p>head {e(choice.get('chosen'))} (asked: {e(choice.get('asked'))}): {e(choice.get('reason'))}</p>{table(rows)}"


def _evaluations(entries: list[dict[str, Any]] | str) -> str:
    """The version's scores on new labelled data (``featurestore evaluate --input``), beside its baselines."""
    if isinstance(entries, str):
        return "<h4>evaluated on new data</h4>" + empty(entries)
    if not entries:
        return ""
    parts = []
    for entry in entries:
        baselines = {k: v for k, v in (entry.get("baselines") or {}).items() if isinstance(v, dict) and "skipped" not in v}
        rows = [{"metric": k, "head": round(v, 4), **{b: round(x[k], 4) if isinstance(x.get(k), float) else "" for b, x in baselines.items()}}
                for k, v in entry["metrics"].items() if isinstance(v, float)]
        parts.append(f"<p>{e(entry.get('rows'))} rows of <code>{e(entry.get('input'))}</code>, {e(entry.get('evaluated_at'))}</p>{table(rows)}")
    return "<h4>evaluated on new data</h4>" + "".join(parts)
