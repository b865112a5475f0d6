"""The page around the plots: one HTML file with plotly's script inlined once, tables, captions,
and the small script that wires each embedding map's hover and click to the panel beside it."""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any

from featurestore.extras import require

SECTIONS = ("overview", "views", "models", "indexes", "runs")
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}
# A colour per frequent value, grey for the rest: plotly's default qualitative palette.
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880", "#ff97ff")
OTHER = "#aaaaaa"
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
figure.plot { display: inline-block; margin: 0.5em; vertical-align: top; width: 540px; }
figure.plot.wide { width: 760px; }
figcaption { font-size: 0.8em; color: #555; }
p.empty { color: #777; font-style: italic; }
div.map { display: flex; gap: 1em; align-items: flex-start; border-top: 1px solid #eee; }
aside.map-side { flex: 1; font-size: 0.85em; min-width: 0; overflow-wrap: anywhere; }
aside.map-side img { display: block; margin-top: 0.4em; border: 1px solid #ccc; }
ol.neighbours li img { display: inline; height: 32px; vertical-align: middle; margin: 0 0.4em 0 0; }
.hint { color: #777; }
"""
# Wires every embedding map: hovering a point shows it beside the map (text, or the photo's
# thumbnail), clicking one lists its nearest neighbours, precomputed at report time (MAP_DATA).
MAP_SCRIPT = """<script>
for (const map of document.querySelectorAll('div.map')) {
  const gd = map.querySelector('.plotly-graph-div'), data = JSON.parse(map.querySelector('script.map-data').textContent);
  const details = map.querySelector('.point-details'), list = map.querySelector('ol.neighbours'), title = map.querySelector('.neighbours-of');
  const line = text => Object.assign(document.createElement('div'), {textContent: text});
  const thumb = e => e.thumb ? Object.assign(new Image(), {src: e.thumb, alt: e.id}) : '';
  gd.on('plotly_hover', ev => {
    const e = data.entities[ev.points[0].customdata];
    details.replaceChildren(line(e.id + (e.label == null ? '' : ' \\u00b7 ' + e.label)), line(e.text || ''), thumb(e));
  });
  gd.on('plotly_click', ev => {
    const e = data.entities[ev.points[0].customdata];
    title.textContent = 'nearest neighbours of ' + e.id + ' (' + data.source + ')';
    list.replaceChildren(...data.neighbours[ev.points[0].customdata].map(([j, score]) => {
      const n = data.entities[j], li = document.createElement('li');
      li.dataset.id = n.id;
      li.append(thumb(n), n.id + '  ' + score.toFixed(3) + (n.label == null ? '' : '  ' + n.label) + (n.text ? '  ' + n.text : ''));
      return li;
    }));
  });
}
</script>"""


def plotly() -> Any:
    """``plotly.graph_objects``, or a one-line error naming the extra that installs it."""
    require("plotly", "report")
    import plotly.graph_objects as go

    return go


def figure(fig: Any, plot_id: str, caption: str, *, wide: bool = False) -> str:
    """A plotly figure as a ``<figure class="plot">`` div that draws itself with the page's plotly."""
    if fig.layout.height is None:
        fig.update_layout(height=360)
    fig.update_layout(template="plotly_white", margin={"l": 55, "r": 20, "t": 40, "b": 50}, font={"size": 11},
                      legend={"font": {"size": 10}})
    body = fig.to_html(full_html=False, include_plotlyjs=False, div_id=plot_id, config=PLOTLY_CONFIG)
    return f'<figure class="plot{" wide" if wide else ""}" id="figure-{e(plot_id)}">{body}<figcaption>{e(caption)}</figcaption></figure>'


def json_script(value: Any, css_class: str) -> str:
    """``value`` as an inert JSON script element; ``<`` escaped so no text in it can close the element."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/json" class="{css_class}">{text}</script>'


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return empty("nothing recorded")
    columns = list(rows[0])
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{e('' if r.get(c) is None else r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{e(title)}</h2>{body}</section>'


def empty(message: str) -> str:
    return f'<p class="empty">{e(message)}</p>'


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def page(root: str, sections: list[str]) -> str:
    """The whole page: plotly's script once in the head, the sections, then the map script."""
    from plotly.offline import get_plotlyjs

    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    nav = " · ".join(f'<a href="#{k}">{k}</a>' for k in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>featurestore report: {e(root)}</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head>'
        f"<body><h1>featurestore report</h1><p>store <code>{e(root)}</code>, written {now}</p><nav>{nav}</nav>"
        + "".join(sections)
        + MAP_SCRIPT
        + "</body></html>\n"
    )
