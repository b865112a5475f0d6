"""``featurestore report``: one self-contained HTML page whose plots render in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from featurestore.store import Store
from tests.conftest import DATA, assert_user_error, need, snapshot

CONLL = DATA / "ner" / "conll2003" / "eng.testa"
PHOTOS = DATA / "images" / "hymenoptera_train"
HOSTILE = "</script><img src=x onerror=alert(1)> win a prize"
# Run in the page after the report's own scripts: marks each plotly div as rendered when plotly
# drew it (js-plotly-plot), it has a box, drawn marks and labelled ticks; then drives every
# embedding map without a pointer: plotly's programmatic hover (the tooltip) and the hover and
# click events (the side panel and the neighbour list), writing what they showed into the DOM.
RENDER_CHECK = """<script>
for (const gd of document.querySelectorAll('.plotly-graph-div')) {
  const box = gd.getBoundingClientRect();
  const marks = gd.querySelectorAll('.scatterlayer .point, .scatterlayer .js-line, .barlayer .point, .heatmaplayer .hm image').length;
  const labels = [...gd.querySelectorAll('.xtick text, .ytick text')].filter(t => t.getComputedTextLength() > 0).length;
  gd.setAttribute('data-rendered', gd.classList.contains('js-plotly-plot') && box.width > 0 && box.height > 0 && marks > 0 && labels > 0 ? 'yes' : 'no');
}
for (const map of document.querySelectorAll('div.map')) {
  const gd = map.querySelector('.plotly-graph-div'), point = {curveNumber: 0, pointNumber: 0, customdata: gd.data[0].customdata[0]};
  Plotly.Fx.hover(gd, [point]);
  map.setAttribute('data-tooltip', (gd.querySelector('.hoverlayer .hovertext') || {textContent: ''}).textContent);
  gd.emit('plotly_hover', {points: [point]});
  map.setAttribute('data-hovered', map.querySelector('.point-details').textContent);
  map.setAttribute('data-thumb', (map.querySelector('.point-details img') || {src: ''}).src.slice(0, 23));
  gd.emit('plotly_click', {points: [point]});
  map.setAttribute('data-point', JSON.parse(map.querySelector('script.map-data').textContent).entities[point.customdata].id);
  map.setAttribute('data-neighbours', [...map.querySelectorAll('ol.neighbours li')].map(li => li.dataset.id).join(' '));
  map.setAttribute('data-title', map.querySelector('.neighbours-of').textContent);
}
document.body.setAttribute('data-checked', 'yes');
</script>"""


class Page(HTMLParser):
    """What the checks need from a page: sections, plot divs, maps, every id, scripts and external refs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.plots: dict[str, dict[str, str]] = {}
        self.maps: dict[str, dict[str, str]] = {}
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.scripts: list[dict[str, str]] = []
        self.external: list[str] = []
        self.body: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        classes = found.get("class", "").split()
        if "id" in found:
            self.ids.append(found["id"])
        if tag == "section":
            self.sections.append(found["id"])
        if tag == "div" and "plotly-graph-div" in classes:
            self.plots[found["id"]] = found
        if tag == "div" and "map" in classes:
            self.maps[found["id"]] = found
        if tag == "script":
            self.scripts.append(found)
        if tag == "body":
            self.body = found
        for key in ("src", "href", "xlink:href"):
            if found.get(key) and not found[key].startswith(("#", "data:")):  # data: thumbnails, the heat map's pixels
                self.external.append(found[key])


def with_check(text: str) -> str:
    """The page with RENDER_CHECK run last (before its closing body tag, not one inside plotly.js)."""
    head, tag, tail = text.rpartition("</body>")
    return head + RENDER_CHECK + tag + tail


@pytest.fixture(scope="module")
def store(tmp_path_factory, sms_lines, word2vec) -> Path:
    """Views 'sms' (100 messages in two runs, indexed), 'conll' (token rows), 'photos' (16 photos),
    'tiny' (4 messages, one of them markup), a spam head, and a ranking and an NER version whose
    reports come from the real metric functions."""
    need(CONLL)
    need(PHOTOS)
    from sklearn.linear_model import LogisticRegression

    from featurestore import TextSource, materialize
    from featurestore.index import build_index
    from featurestore.sources import ConllSource, ImageSource
    from flows.train import train_and_register
    from models.base import TrainResult
    from models.ir import evaluate, ndcg_at_k
    from models.ner import entity_report
    from models.ranking import headline
    from models.registry import load_model, save_model

    root = tmp_path_factory.mktemp("report")
    store = root / "store"
    for n in (60, 100):
        (root / "sms").write_text("\n".join(sms_lines[:n]) + "\n", encoding="utf-8")
        materialize(TextSource(str(root / "sms"), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=str(store))
    (root / "tiny").write_text("\n".join([*sms_lines[200:203], f"spam\t{HOSTILE}"]) + "\n", encoding="utf-8")
    materialize(TextSource(str(root / "tiny"), format="sms", id_col="@line", keep=("label",)), "tiny", "word2vec", store=str(store))
    (root / "small.conll").write_text("\n\n".join(CONLL.read_text(encoding="utf-8").split("\n\n")[:30]) + "\n", encoding="utf-8")
    materialize(ConllSource(str(root / "small.conll")), "conll", "word2vec", store=str(store), encoder_options={"granularity": "token"})
    for kind in ("ants", "bees"):
        (root / "photos" / kind).mkdir(parents=True)
        for photo in sorted((PHOTOS / kind).iterdir())[:8]:
            (root / "photos" / kind / photo.name).write_bytes(photo.read_bytes())
    materialize(ImageSource(str(root / "photos")), "photos", "efficientnet-lite0", store=str(store), encoder_options={"device": "cpu"})
    build_index("sms", store=str(store))
    train_and_register("spam", "sms", store=str(store), name="spam", options={"n_splits": 3})
    spam_training = load_model("spam", store=str(store)).training  # a real training manifest for the hand-made heads below
    qrels = {"q1": {"d1": 1.0}, "q2": {"d3": 1.0}}
    rankings = {"bm25": {"q1": ["d2", "d1"], "q2": ["d3"]}, "dense": {"q1": ["d1"], "q2": ["d2", "d3"]}, "reranker": {"q1": ["d1"], "q2": ["d3"]}}
    systems = {name: evaluate(ranking, qrels) for name, ranking in rankings.items()}
    per_query = {q: {name: ndcg_at_k(ranking[q], qrels[q]) for name, ranking in rankings.items()} for q in qrels}
    ner = entity_report([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]])
    ner["baselines"] = {"dictionary": entity_report([["B-PER", "O", "B-LOC"]], [["O", "O", "B-LOC"]])}
    for name, task, metrics, report in (("rank", "ranking", headline(systems), {"systems": systems, "per_query_ndcg@10": per_query}),
                                        ("ner", "ner", {"f1": ner["f1"]}, ner)):
        save_model(name, TrainResult(task, LogisticRegression(), metrics, report, spam_training, []), store=store)
    return store


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> tuple[Path, dict]:
    """The report of ``store`` (PCA maps), written once; the store's files before and after."""
    from flows.report import write_report

    before = snapshot(store)
    out = tmp_path_factory.mktemp("out") / "report.html"
    summary = write_report(out, store=str(store), projection="pca")
    return out, {"summary": summary, "before": before, "after": snapshot(store)}


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium, installed when missing and this process may; else the test is skipped."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("needs Debian's chromium package (apt-get install -y chromium); it is missing and this user cannot install it")
    done = subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    found = shutil.which("chromium")
    if not found:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"needs Debian's chromium package; `apt-get install -y chromium` failed: {last}")
    return found


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Chromium without a sandbox (tests run as root in containers), a throw-away profile and no DNS."""
    flags = ["--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", f"--user-data-dir={profile}",
             "--host-resolver-rules=MAP * ~NOTFOUND"]
    return subprocess.run([browser, *flags, *args], check=False, capture_output=True, text=True, timeout=120)


def test_the_page_has_every_section_and_plot_and_needs_nothing_else(report, store):
    from plotly.offline import get_plotlyjs

    out, facts = report
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    ids = {t.meta.view: t.meta.encoder_id for t in Store(store).tables()}
    assert page.sections == ["overview", "views", "models", "indexes", "runs"]
    assert set(page.plots) == {
        f"plot-map-sms-{ids['sms']}", f"plot-map-conll-{ids['conll']}", f"plot-map-photos-{ids['photos']}",
        "plot-baselines-spam-1", "plot-pr-spam-1", "plot-confusion-spam-1", "plot-baselines-rank-1", "plot-queries-rank-1",
        "plot-baselines-ner-1", "plot-ner-ner-1", "plot-index-recall-latency", "plot-runs-throughput", "plot-drift",
    }
    assert len(page.ids) == len(set(page.ids)), "two elements share an id"
    assert page.external == [] and not {"link", "iframe", "img"} & page.tags  # the thumbnails are made by the map script
    assert not any(script.get("src") for script in page.scripts)
    assert text.count(get_plotlyjs()[:40]) == 1 and text.count("Plotly.newPlot(") == len(page.plots)  # plotly once, then one call per plot
    for expected in ("coloured by label", "coloured by ner_tags", "ham (82)", "spam (18)", "B-PER", "average precision", "projection: PCA",
                     "by exact search over the sample (it has no index)", "from its Flat index of table version", "char-tfidf+logistic"):
        assert expected in text, expected
    counts = {k: facts["summary"][k] for k in ("views", "models", "indexes", "runs")}
    assert counts == {"views": 4, "models": 3, "indexes": 1, "runs": 5}


def test_a_small_view_is_a_table_and_its_markup_stays_text(report, store):
    out, _ = report
    text = out.read_text(encoding="utf-8")
    page = Page(text)
    tiny = next(t for t in Store(store).tables() if t.meta.view == "tiny")
    assert f"view-tiny-{tiny.meta.encoder_id}" in page.ids and not any("tiny" in p for p in page.plots)
    assert "4 rows: too few for a map, listed instead" in text
    assert "&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; win a prize" in text  # a cell's text, not markup
    assert HOSTILE not in text


def test_each_map_carries_texts_thumbnails_and_neighbours_for_its_sample(report, store):
    out, _ = report
    text = out.read_text(encoding="utf-8")
    blobs = [json.loads(chunk.split(">", 1)[1].split("</script>", 1)[0]) for chunk in text.split('<script type="application/json" class="map-data"')[1:]]
    assert len(blobs) == 3
    by_source = {len(b["neighbours"]): b for b in blobs}
    sms, photos = by_source[100], by_source[16]
    assert all(len(n) == 5 for n in sms["neighbours"]) and "win" in " ".join(e["text"] or "" for e in sms["entities"])
    thumbs = [e["thumb"] for e in photos["entities"][:16]]
    assert all(t.startswith("data:image/jpeg;base64,") for t in thumbs) and max(map(len, thumbs)) < 8_000


def test_the_report_leaves_the_store_as_it_was(report):
    _, facts = report
    assert facts["after"] == facts["before"]


def test_every_plot_renders_and_the_maps_answer_hover_and_click_in_headless_chromium(report, store, chromium, tmp_path):
    from featurestore.index import search

    out, _ = report
    checked = tmp_path / "checked.html"
    checked.write_text(with_check(out.read_text(encoding="utf-8")), encoding="utf-8")
    done = headless(chromium, tmp_path / "profile", "--dump-dom", checked.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    page = Page(done.stdout)
    assert page.body.get("data-checked") == "yes", done.stdout[-2000:]
    assert len(page.plots) == 13 and all(p.get("data-rendered") == "yes" for p in page.plots.values()), {
        k: p.get("data-rendered") for k, p in page.plots.items()}
    assert all("js-plotly-plot" in p["class"] for p in page.plots.values())
    tables = {t.meta.view: t.meta.encoder_id for t in Store(store).tables()}
    sms = page.maps[f"view-sms-{tables['sms']}"]
    point = sms["data-point"]
    assert point in sms["data-tooltip"] and sms["data-hovered"].startswith(f"{point} · ")  # the tooltip and the side panel
    found = search("sms", store=str(store), ids=[point], k=6)[0]
    assert sms["data-neighbours"].split() == [r["entity_id"] for r in found if r["entity_id"] != point][:5]
    assert sms["data-title"].startswith(f"nearest neighbours of {point} (from its Flat index")
    photos = page.maps[f"view-photos-{tables['photos']}"]
    assert photos["data-thumb"] == "data:image/jpeg;base64," and len(photos["data-neighbours"].split()) == 5
    conll = page.maps[f"view-conll-{tables['conll']}"]
    assert len(conll["data-neighbours"].split()) == 5 and "exact search over the sample" in conll["data-title"]
    shot = tmp_path / "page.png"
    done = headless(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,6000", out.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    coloured = int((np.ptp(pixels, axis=2) > 60).sum())  # marks, bars, heat map; text and frames are grey
    assert coloured > 20_000, f"the screenshot shows only {coloured} coloured pixels: the plots did not paint"


@pytest.mark.slow
def test_umap_maps_when_umap_learn_is_installed(store, tmp_path):
    pytest.importorskip("umap", reason="the umap extra (umap-learn) is not installed")
    from flows.report import write_report

    before = snapshot(store)
    write_report(tmp_path / "r.html", store=str(store), projection="umap", sample=60)
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert text.count("projection: UMAP (umap-learn, cosine, 15 neighbours)") == 2  # sms and conll; 16 photos are too few
    assert "projection: PCA (16 rows are too few for UMAP)" in text
    assert snapshot(store) == before


def test_the_command_creates_parent_folders_and_writes_atomically(store, cli, tmp_path):
    out = tmp_path / "reports" / "today" / "report.html"
    code, stdout, err = cli("report", "--store", store, "--out", out, "--sample", "50", "--projection", "pca", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    assert summary["path"] == str(out) and summary["bytes"] == out.stat().st_size
    assert "50 of 100 rows" in out.read_text(encoding="utf-8")
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]  # no temporary file left beside it


def test_an_empty_store_gives_a_page_that_says_so(cli, tmp_path):
    (tmp_path / "empty").mkdir()
    code, stdout, err = cli("report", "--store", tmp_path / "empty", "--out", tmp_path / "r.html")
    assert code == 0, err
    assert "written to" in stdout
    page = Page(text := (tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.plots == {} and "holds no views yet" in text and "no models in the registry yet" in text
    assert list((tmp_path / "empty").iterdir()) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda d, s: ["--store", d / "nowhere"], "does not exist; pass --store"),
        (lambda d, s: ["--store", s, "--out", d], "is a folder; name the report file"),
        (lambda d, s: ["--store", s, "--out", (d / "file").write_text("") or d / "file" / "r.html"], "cannot write the report to"),
        (lambda d, s: ["--store", s, "--sample", "0"], "sample must be a positive int. Got 0 instead."),
        (lambda d, s: ["--store", s, "--projection", "tsne"], "projection must be one of: auto, umap, pca. Got 'tsne' instead."),
    ],
    ids=["missing-store", "out-is-a-folder", "out-under-a-file", "bad-sample", "bad-projection"],
)
def test_bad_input_is_one_line_exit_2_and_nothing_is_written(cli, tmp_path, args, message):
    (store := tmp_path / "store").mkdir()
    given = args(tmp_path, store)
    before = snapshot(tmp_path)
    assert_user_error(cli("report", *given, *([] if "--out" in given else ["--out", tmp_path / "r.html"])), message)
    assert snapshot(tmp_path) == before and not (tmp_path / "nowhere").exists()


def test_without_plotly_the_command_names_the_extra(cli, store, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "plotly", None)  # what an install without the report extra has: no plotly to import
    before = snapshot(store)
    assert_user_error(cli("report", "--store", store, "--out", tmp_path / "r.html"), "plotly is not installed; install the extra with: pip install 'featurestore[report]'")
    assert snapshot(store) == before and not (tmp_path / "r.html").exists()


def test_a_text_in_a_map_cannot_close_its_data_script():
    from flows.report.page import json_script

    element = json_script({"entities": [{"id": "1", "text": HOSTILE}]}, "map-data")
    inner = element.removeprefix('<script type="application/json" class="map-data">').removesuffix("</script>")
    assert "<" not in inner and json.loads(inner)["entities"][0]["text"] == HOSTILE
