"""The report's embedding maps: a 2-D projection of a seeded sample of each view's latest vectors.

Each point carries its id, label and text (or a small thumbnail of the photo) for the hover
panel, and its nearest neighbours for the click list: searched at report time in the view's
FAISS index when it has one (so the list is what ``featurestore search --id`` answers), else by
exact search over the sample. A view of a handful of rows gets a small table instead of a map.
"""

from __future__ import annotations

import base64
import importlib.util
import io
from collections import Counter
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from featurestore.errors import FeatureStoreError
from featurestore.index import index_info, load_index
from featurestore.index.tuning import exact_knn
from featurestore.store import FeatureTable, Store
from featurestore.store.schema import SYSTEM_COLUMNS
from featurestore.vectors import prepare
from flows.report.page import OTHER, PALETTE, e, empty, figure, json_script, plotly
from flows.report.page import table as html_table

Projection = Literal["auto", "umap", "pca"]
PROJECTIONS = ("auto", "umap", "pca")
SMALL_VIEW = 12  # at most this many live rows: a table of them, not a near-empty map
NEIGHBOURS = 5
COLOUR_COLUMN_MAX_VALUES = 20  # a kept column with more distinct values is an id or a text, not a class
UMAP_MIN_ROWS = 50  # fewer rows than this: PCA (UMAP's neighbourhood graph needs a few dozen)
HOVER_CHARS, PANEL_CHARS = 80, 240
THUMB_PX = 64
TOKEN_LAYOUT = ("token_index", "token", "char_start", "char_end", "oov")


def views_section(s: Store, sample: int, seed: int, projection: Projection) -> tuple[str, int]:
    """One panel per table; the count of panels."""
    panels = [view_panel(s, t, sample, seed, projection) for t in s.tables()]
    return "".join(panels) if panels else empty("no views yet"), len(panels)


def view_panel(s: Store, table: FeatureTable, sample: int, seed: int, projection: Projection) -> str:
    """The map of one table read at its newest version (a pinned read: nothing is cached in the store)."""
    meta = table.meta
    version = int(table.delta().version())
    columns = [c for c in table.kept_columns() if c not in SYSTEM_COLUMNS] + ["content_hash"]
    frame = table.latest(columns, as_of=version)
    what = "tokens" if meta.granularity == "token" else "photos" if meta.modality == "image" else "rows"
    title = f"{meta.view} / {meta.encoder_name} ({meta.encoder_id}), version {version}"
    slug = f"{meta.view}-{meta.encoder_id}"
    if len(frame) == 0:
        return f'<div class="view" id="view-{e(slug)}"><h3>{e(title)}</h3>{empty("no live rows")}</div>'
    rows = sample_rows(len(frame), sample, seed)
    colour = colour_column(frame.columns, meta.granularity)
    described = Described(s, table, frame, colour)
    if len(frame) <= SMALL_VIEW:
        listing = [{"id": frame.ids[r], **({colour: described.label(r)} if colour else {}), "text": described.text(r, PANEL_CHARS)}
                   for r in rows.tolist()]
        return (f'<div class="view small" id="view-{e(slug)}"><h3>{e(title)}</h3>'
                f"<p>{len(frame)} {what}: too few for a map, listed instead{e(described.note)}</p>{html_table(listing)}</div>")
    vectors = frame.vectors[rows]
    points, axes, how = project(vectors, projection, seed)
    found, source = neighbours(s, table, frame, rows, vectors)
    entities, index_of = described.entities(rows, [eid for row in found for eid, _ in row], thumbs=meta.modality == "image")
    data = {"entities": entities, "neighbours": [[[index_of[eid], round(score, 4)] for eid, score in row] for row in found], "source": source}
    hint = "its photo" if meta.modality == "image" else "its id, label and text"
    caption = (f"{title}: {len(rows):,} of {len(frame):,} {what}" + (f" (a seeded sample, seed {seed})" if len(rows) < len(frame) else "")
               + f"; {how}" + (f"; coloured by {colour}" if colour else "") + f"{described.note}. Hover a point for {hint}; "
               f"click it for its {NEIGHBOURS} nearest neighbours {source}.")
    plot = figure(_scatter(points, axes, rows, frame, described, colour), f"plot-map-{slug}", caption, wide=True)
    side = ('<aside class="map-side"><div class="point-details"><span class="hint">hover a point</span></div>'
            '<h4 class="neighbours-of">click a point for its nearest neighbours</h4><ol class="neighbours"></ol></aside>')
    return f'<h3>{e(title)}</h3><div class="map" id="view-{e(slug)}">{plot}{side}{json_script(data, "map-data")}</div>'


def sample_rows(n: int, sample: int, seed: int) -> np.ndarray:
    """Sorted row numbers of a seeded sample without replacement (all rows when n <= sample)."""
    if n <= sample:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=sample, replace=False)).astype(np.int64)


def colour_column(columns: pa.Table, granularity: str) -> str | None:
    """``ner_tags`` for tokens, ``label`` when kept, else the first text column with few values."""
    preferred = ("ner_tags", "label") if granularity == "token" else ("label",)
    for name in preferred:
        if name in columns.column_names:
            return name
    for name in columns.column_names:
        col = columns.column(name)
        if name not in TOKEN_LAYOUT and (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)) and \
                len(set(col.to_pylist())) <= COLOUR_COLUMN_MAX_VALUES:
            return name
    return None


def project(vectors: np.ndarray, projection: Projection, seed: int) -> tuple[np.ndarray, tuple[str, str], str]:
    """``(n, 2)`` coordinates, the axis titles and how they were made (for the caption).

    ``auto`` is UMAP (cosine) when umap-learn is installed and the sample has at least
    ``UMAP_MIN_ROWS`` rows, else PCA.
    """
    use_umap = projection == "umap" or (projection == "auto" and importlib.util.find_spec("umap") is not None)
    if use_umap and len(vectors) >= UMAP_MIN_ROWS:
        from featurestore.extras import require

        umap = require("umap", "umap")
        reducer = umap.UMAP(n_components=2, n_neighbors=15, metric="cosine", random_state=seed, n_jobs=1)
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float64), ("UMAP 1", "UMAP 2"), "projection: UMAP (umap-learn, cosine, 15 neighbours)"
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=seed)
    points = pca.fit_transform(np.asarray(vectors, dtype=np.float64))
    share = [*pca.explained_variance_ratio_.tolist(), 0.0, 0.0]
    why = f" ({len(vectors)} rows are too few for UMAP)" if use_umap else ""
    return points, (f"PC1 ({share[0]:.0%} of variance)", f"PC2 ({share[1]:.0%} of variance)"), f"projection: PCA{why}"


def neighbours(s: Store, table: FeatureTable, frame: Any, rows: np.ndarray, vectors: np.ndarray) -> tuple[list[list[tuple[str, float]]], str]:
    """Each sampled row's ``NEIGHBOURS`` nearest entities (itself left out) with their scores, and where they come from."""
    metric = table.meta.metric
    score = "cosine similarity" if metric == "cosine" else "squared L2 distance"
    reason = "it has no index"
    try:
        info = index_info(table, store=s)
        if info is not None:
            index = load_index(table.meta.view, table.meta.encoder_id, store=s)
            scores, positions = index.search(vectors, NEIGHBOURS + 1)
            ids = np.asarray(index.entity_at(positions), dtype=object).reshape(positions.shape)
            found = _without_self(frame.ids[rows], ids, scores)
            return found, f"from its {info.get('factory')} index of table version {info.get('table_version')}, {score}"
    except FeatureStoreError as exc:
        reason = f"its index cannot be read: {exc}"
    scores, positions = exact_knn(vectors, prepare(vectors, metric), NEIGHBOURS + 1, metric)
    found = _without_self(frame.ids[rows], frame.ids[rows][positions], scores)
    return found, f"by exact search over the sample ({reason}), {score}"


def _without_self(own: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> list[list[tuple[str, float]]]:
    return [[(str(eid), float(sc)) for eid, sc in zip(row_ids, row_scores) if eid is not None and eid != me][:NEIGHBOURS]
            for me, row_ids, row_scores in zip(own.tolist(), ids.tolist(), scores.tolist())]


class Described:
    """Labels, texts and thumbnails of a frame's rows: a kept ``text`` (or token) column, else the
    content of the view's source (its run record), used only where it still has the stored content hash."""

    def __init__(self, s: Store, table: FeatureTable, frame: Any, colour: str | None) -> None:
        self.frame, self.colour = frame, colour
        names = frame.columns.column_names
        self.labels = frame.columns.column(colour).to_pylist() if colour else None
        self.note = ""
        self.content: dict[str, str] = {}
        self.texts: list[Any] | None = None
        if "token" in names:
            self.texts = frame.columns.column("token").to_pylist()
        elif "text" in names:
            self.texts = frame.columns.column("text").to_pylist()
        else:
            self._read_source(s, table)

    def _read_source(self, s: Store, table: FeatureTable) -> None:
        try:
            stored = dict(zip(self.frame.ids.tolist(), self.frame.columns.column("content_hash").to_pylist()))
            self.content = s.source_content(table.meta.view, table.meta.encoder_id, stored)
        except (FeatureStoreError, OSError) as exc:
            self.note = f"; no texts: {str(exc).splitlines()[0][:160]}"
            return
        if len(self.content) < len(stored):
            self.note = f"; {len(stored) - len(self.content)} rows without text (their source has changed)"

    def label(self, row: int) -> Any:
        return None if self.labels is None else self.labels[row]

    def text(self, row: int, chars: int) -> str | None:
        value = self.texts[row] if self.texts is not None else self.content.get(self.frame.ids[row])
        return None if value is None else _short(str(value), chars)

    def entities(self, rows: np.ndarray, extra_ids: list[str], *, thumbs: bool) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The sampled rows first (a point's customdata is its position here), then the other
        neighbours; the position of each entity id."""
        frame_rows = rows.tolist()
        index_of = {eid: i for i, eid in enumerate(self.frame.ids[rows].tolist())}
        others = [eid for eid in dict.fromkeys(extra_ids) if eid not in index_of]
        found = self.frame.rows_of(others).tolist() if others else []
        out = []
        for i, (eid, row) in enumerate([*zip(self.frame.ids[rows].tolist(), frame_rows), *zip(others, found)]):
            index_of.setdefault(eid, i)
            entity: dict[str, Any] = {"id": eid}
            if row >= 0:
                entity.update(label=self.label(row), text=None if thumbs else self.text(row, PANEL_CHARS))
                if thumbs and i < len(frame_rows) and eid in self.content:
                    entity["thumb"] = thumbnail(self.content[eid])
            out.append(entity)
        return out, index_of


def thumbnail(path: str) -> str | None:
    """A ``THUMB_PX`` square JPEG data URI of the photo (centre crop, upright), None when it does not decode."""
    from PIL import Image

    from featurestore.errors import ImageDecodeError
    from featurestore.sources.imaging import decode_pixels

    try:
        pixels = decode_pixels(path, THUMB_PX, THUMB_PX)
    except ImageDecodeError:
        return None
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=75)
    return "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")


def _scatter(points: np.ndarray, axes: tuple[str, str], rows: np.ndarray, frame: Any, described: Described, colour: str | None) -> Any:
    """One trace per frequent label (legend with counts; clicking one hides it), the rest grey as "other"."""
    go = plotly()
    names = ["(none)" if described.label(r) is None else str(described.label(r)) for r in rows.tolist()] if colour else ["rows"] * len(rows)
    counts = Counter(names).most_common()
    shown = [name for name, _ in counts[: len(PALETTE)]] if len(counts) > len(PALETTE) + 1 else [name for name, _ in counts]
    group = np.array([n if n in shown else "other" for n in names], dtype=object)
    hover = [f"<b>{e(eid)}</b>" + ("" if name == "rows" else f" · {e(name)}") + (f"<br>{e(t)}" if (t := described.text(r, HOVER_CHARS)) else "")
             for eid, r, name in zip(frame.ids[rows].tolist(), rows.tolist(), names)]
    fig = go.Figure()
    for i, name in enumerate([*shown, *(["other"] if len(shown) < len(counts) else [])]):
        where = np.flatnonzero(group == name)
        fig.add_trace(go.Scatter(x=points[where, 0], y=points[where, 1], mode="markers", name=f"{name} ({len(where)})",
                                 marker={"size": 6, "opacity": 0.7, "color": OTHER if name == "other" else PALETTE[i % len(PALETTE)]},
                                 customdata=where.tolist(), hovertext=[hover[j] for j in where.tolist()], hoverinfo="text"))
    fig.update_layout(height=420, xaxis_title=axes[0], yaxis_title=axes[1], hovermode="closest", showlegend=bool(colour))
    return fig


def _short(text: str, chars: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= chars else text[: chars - 1] + "…"
