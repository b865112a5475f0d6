"""``featurestore report``: one self-contained HTML page whose plots render in a real browser."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from featurestore.store import Store
from tests.conftest import DATA, need, snapshot
from tests.flows.test_cli import assert_user_error

CONLL = DATA / "ner" / "conll2003" / "eng.testa"
# Run in the page after everything above it is laid out: marks each inline SVG plot as rendered
# when it has a box on the page, drawn geometry inside, and at least one label set in a font.
RENDER_CHECK = """<script>
for (const svg of document.querySelectorAll('figure.plot > svg')) {
  const box = svg.getBoundingClientRect(), inner = svg.getBBox();
  const texts = [...svg.querySelectorAll('text')].filter(t => t.getComputedTextLength() > 0).length;
  const drawn = svg.querySelectorAll('path, use').length;
  svg.setAttribute('data-rendered', box.width > 0 && box.height > 0 && inner.width > 0 && inner.height > 0 && texts > 0 && drawn > 0 ? 'yes' : 'no');
}
document.body.setAttribute('data-checked', 'yes');
</script></body>"""


class Page(HTMLParser):
    """What the checks need from a page: section and plot ids, every id, scripts and external refs."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.plots: dict[str, dict[str, str]] = {}
        self.ids: list[str] = []
        self.tags: set[str] = set()
        self.external: list[str] = []
        self.body: dict[str, str] = {}
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        if "id" in found:
            self.ids.append(found["id"])
        if tag == "section":
            self.sections.append(found["id"])
        if tag == "svg" and "data-plot" in found:
            self.plots[found["data-plot"]] = found
        if tag == "body":
            self.body = found
        for key in ("src", "href", "xlink:href"):
            if found.get(key) and not found[key].startswith(("#", "data:")):  # data: the confusion matrix's pixels
                self.external.append(found[key])


@pytest.fixture(scope="module")
def store(tmp_path_factory, sms_lines, word2vec) -> Path:
    """Views 'sms' (100 messages in two runs, indexed) and 'conll' (token rows), a spam head, and
    a ranking and an NER version whose reports come from the real metric functions."""
    need(CONLL)
    from sklearn.linear_model import LogisticRegression

    from featurestore import TextSource, materialize
    from featurestore.index import build_index
    from featurestore.sources import ConllSource
    from flows.train import train_and_register
    from models.base import TrainResult
    from models.ner import entity_report
    from models.ranking import evaluate, headline
    from models.registry import save_model

    root = tmp_path_factory.mktemp("report")
    store = root / "store"
    for n in (60, 100):
        (root / "sms").write_text("\n".join(sms_lines[:n]) + "\n", encoding="utf-8")
        materialize(TextSource(str(root / "sms"), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=str(store))
    (root / "small.conll").write_text("\n\n".join(CONLL.read_text(encoding="utf-8").split("\n\n")[:30]) + "\n", encoding="utf-8")
    materialize(ConllSource(str(root / "small.conll")), "conll", "word2vec", store=str(store), encoder_options={"granularity": "token"})
    build_index("sms", store=str(store))
    train_and_register("spam", "sms", None, str(store), "spam", {"n_splits": 3})
    qrels = {"q1": {"d1": 1.0}, "q2": {"d3": 1.0}}
    systems = {name: evaluate(ranking, qrels) for name, ranking in (
        ("bm25", {"q1": ["d2", "d1"], "q2": ["d3"]}), ("dense", {"q1": ["d1"], "q2": ["d2", "d3"]}), ("reranker", {"q1": ["d1"], "q2": ["d3"]}))}
    ner = entity_report([["B-PER", "O", "B-LOC"]], [["B-PER", "O", "O"]])
    for name, task, metrics, report in (("rank", "ranking", headline(systems), {"systems": systems}), ("ner", "ner", {"f1": ner["f1"]}, ner)):
        save_model(store, name, TrainResult(task, LogisticRegression(), metrics, report, {"rows": 3}, []))
    return store


@pytest.fixture(scope="module")
def report(store, tmp_path_factory) -> tuple[Path, dict]:
    """The report of ``store``, written once; the store's files before and after."""
    from featurestore.report import write_report

    before = snapshot(store)
    out = tmp_path_factory.mktemp("out") / "report.html"
    summary = write_report(out, store=str(store))
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
    out, facts = report
    page = Page(out.read_text(encoding="utf-8"))
    ids = {t.meta.view: t.meta.encoder_id for t in Store(store).tables()}
    assert page.sections == ["overview", "views", "models", "indexes", "runs"]
    assert set(page.plots) == {
        f"plot-view-sms-{ids['sms']}", f"plot-view-conll-{ids['conll']}", "plot-pr-spam-1", "plot-confusion-spam-1",
        "plot-ranking-rank-1", "plot-ner-ner-1", "plot-index-recall-latency", "plot-runs-throughput",
    }
    assert len(page.ids) == len(set(page.ids)), "two plots share an element id"
    assert page.external == [] and not {"script", "link", "img", "iframe"} & page.tags
    text = out.read_text(encoding="utf-8")
    for expected in ("coloured by label", "coloured by ner_tags", "ham (82)", "spam (18)", "B-PER", "average precision"):
        assert expected in text
    counts = {k: facts["summary"][k] for k in ("views", "models", "indexes", "runs")}
    assert counts == {"views": 2, "models": 3, "indexes": 1, "runs": 3}


def test_the_report_leaves_the_store_as_it_was(report):
    _, facts = report
    assert facts["after"] == facts["before"]


def test_every_plot_renders_in_headless_chromium(report, chromium, tmp_path):
    out, _ = report
    checked = tmp_path / "checked.html"
    checked.write_text(out.read_text(encoding="utf-8").replace("</body>", RENDER_CHECK), encoding="utf-8")
    done = headless(chromium, tmp_path / "profile", "--dump-dom", checked.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    page = Page(done.stdout)
    assert page.body.get("data-checked") == "yes", done.stdout[-2000:]
    assert len(page.plots) == 8 and all(p.get("data-rendered") == "yes" for p in page.plots.values()), {
        k: p.get("data-rendered") for k, p in page.plots.items()}
    shot = tmp_path / "page.png"
    done = headless(chromium, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,4000", out.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    coloured = int((np.ptp(pixels, axis=2) > 60).sum())  # marks, bars, heat map; text and frames are grey
    assert coloured > 20_000, f"the screenshot shows only {coloured} coloured pixels: the plots did not paint"


def test_the_command_creates_parent_folders_and_writes_atomically(store, cli, tmp_path):
    out = tmp_path / "reports" / "today" / "report.html"
    code, stdout, err = cli("report", "--store", store, "--out", out, "--sample", "50", "--json")
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
    ],
    ids=["missing-store", "out-is-a-folder", "out-under-a-file", "bad-sample"],
)
def test_bad_input_is_one_line_exit_2_and_nothing_is_written(cli, tmp_path, args, message):
    (store := tmp_path / "store").mkdir()
    given = args(tmp_path, store)
    before = snapshot(tmp_path)
    assert_user_error(cli("report", *given, *([] if "--out" in given else ["--out", tmp_path / "r.html"])), message)
    assert snapshot(tmp_path) == before and not (tmp_path / "nowhere").exists()
