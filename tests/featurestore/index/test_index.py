"""FAISS indexes: choice by size and budget, measured recall, storage, and every bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from featurestore.errors import EncoderError, InvalidArgumentError, SchemaMismatchError, StoreError
from featurestore.index import VectorIndex, build_index, choose_factory, index_status, parse_bytes, search, update_index
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from featurestore.store import Store
from tests.conftest import DATA, need


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, dim)).astype(np.float32)
    return (centers[rng.integers(0, 64, n)] + 0.4 * rng.standard_normal((n, dim))).astype(np.float32)


def exact_top(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.argsort(-(qn @ xn.T), axis=1)[:, :k]


def test_choice_follows_size_and_budget():
    assert choose_factory(5_000, 384) == "Flat"
    assert choose_factory(1_000_000, 384, memory_budget=parse_bytes("4GB")) == "IVF4096,Flat"
    assert choose_factory(1_000_000, 384, memory_budget=parse_bytes("512MB")).endswith(",PQ64,Refine(SQ8)")
    assert choose_factory(50_000, 100, index_type="hnsw") == "HNSW32"
    assert parse_bytes("1.5GB") == int(1.5 * 1024**3)
    with pytest.raises(InvalidArgumentError, match="memory budget must look like 2GB"):
        parse_bytes("lots")
    with pytest.raises(InvalidArgumentError, match="index type must be one of auto, flat, hnsw, ivf, ivfpq"):
        choose_factory(10, 4, index_type="annoy")


@pytest.mark.parametrize("index_type", ["ivf", "hnsw"])
def test_approximate_indexes_reach_the_target_recall_on_fresh_queries(index_type, tmp_path):
    data = clustered(20_300, 32)
    x, queries = data[:20_000], data[20_000:]  # held-out queries from the same distribution
    ids = np.array([f"e{i}" for i in range(len(x))], dtype=object)
    index = VectorIndex.build(ids, x, view="v", encoder_id="t-1", metric="cosine", table_version=3, index_type=index_type, target_recall=0.95)
    assert index.info.recall_at_10 >= 0.95 and index.info.params
    _, found = index.search(queries, 10)
    truth = exact_top(x, queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.93  # measured on stored vectors, holds on new ones
    index.save(tmp_path)
    info = json.loads((tmp_path / "index.json").read_text())
    assert info["factory"].startswith(("IVF", "HNSW")) and info["table_version"] == 3 and info["encoder_id"] == "t-1"
    loaded = VectorIndex.load(tmp_path, encoder_id="t-1")
    np.testing.assert_array_equal(loaded.search(queries, 10)[1], found)


def test_load_refuses_another_encoder_a_damaged_file_and_a_wrong_dimension(tmp_path):
    x = clustered(500, 16)
    index = VectorIndex.build(np.array([str(i) for i in range(500)], dtype=object), x, view="v", encoder_id="t-1", metric="l2", table_version=0)
    index.save(tmp_path)
    with pytest.raises(SchemaMismatchError, match="built for t-1, not t-2; rebuild it"):
        VectorIndex.load(tmp_path, encoder_id="t-2")
    with pytest.raises(SchemaMismatchError, match="must have dimension 16 for t-1. Got 8 instead."):
        index.search(np.ones((1, 8), np.float32), 3)
    [path] = tmp_path.glob("index-*.faiss")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(StoreError, match="is damaged .*rebuild it with `featurestore index build`"):
        VectorIndex.load(tmp_path, encoder_id="t-1")


def test_search_by_text_id_and_vector_returns_kept_columns(sms_view, word2vec):
    info = build_index("sms", store=sms_view).info
    assert (info.factory, info.rows, info.recall_at_10) == ("Flat", 300, 1.0)
    [hits] = search("sms", store=sms_view, texts=["win a free prize, call now"], k=5)
    assert len(hits) == 5 and hits[0]["score"] >= hits[-1]["score"]
    assert sum(h["label"] == "spam" for h in hits) >= 3
    [by_id] = search("sms", store=sms_view, ids=["3"], k=1)
    assert by_id[0]["entity_id"] == "3" and by_id[0]["score"] == pytest.approx(1.0, abs=1e-5)
    vector = word2vec.encode(["win a free prize, call now"])
    assert search("sms", store=sms_view, vectors=vector, k=5)[0] == hits


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ids": ["nope"]}, StoreError, "id(s) 'nope' are not in view 'sms'"),
        ({"vectors": np.ones((1, 7), np.float32)}, SchemaMismatchError, "must have dimension 100"),
        ({"texts": ["x"], "k": 0}, InvalidArgumentError, "k must be a positive int. Got 0 instead."),
        ({"texts": ["x"], "ids": ["3"]}, InvalidArgumentError, "give exactly one kind of query"),
        ({"images": ["x.jpg"]}, Exception, "query it with a text"),
        # a vector query is cleared by check_query's quick path: its edges give the general path's messages
        ({"vectors": np.ones((1, 100), np.float32), "k": 0}, InvalidArgumentError, "k must be a positive int. Got 0 instead."),
        ({"vectors": np.ones((1, 100), np.float32), "k": True}, InvalidArgumentError, "k must be a positive int. Got True instead."),
        ({"vectors": np.ones((1, 100), np.float32), "exact_below": -1}, InvalidArgumentError, "exact_below must be an int >= 0"),
        ({"vectors": np.ones((1, 100), np.float32), "ids": ["3"]}, InvalidArgumentError, "give exactly one kind of query"),
        ({"vectors": np.zeros((1, 100), np.float32)}, EncoderError, "query vector 1 of 1 is the zero vector"),
        ({"vectors": np.array([[1.0] * 99 + [np.nan]], np.float32)}, InvalidArgumentError, "query vector 1 of 1 holds NaN"),
    ],
)
def test_bad_queries_are_clear_errors(sms_view, kwargs, error, message):
    build_index("sms", store=sms_view)
    with pytest.raises(error, match=re.escape(message)):
        search("sms", store=sms_view, **kwargs)


def test_index_errors_for_missing_view_empty_table_and_no_index(sms_view, tmp_path):
    with pytest.raises(StoreError, match="view 'nope' does not exist"):
        build_index("nope", store=sms_view)
    with pytest.raises(StoreError, match="no index at .*build one with `featurestore index build`"):
        search("sms", store=sms_view, ids=["3"])
    one = tmp_path / "one.csv"
    one.write_text("id,text\na,hello\n")
    materialize(TextSource(str(one), id_col="id"), "one", "word2vec", store=sms_view)
    other = tmp_path / "other.csv"
    other.write_text("id,text\nb,\n")  # a, gone from the source, is tombstoned; b fails (empty text)
    materialize(TextSource(str(other), id_col="id"), "one", "word2vec", store=sms_view, full_sync=True)
    with pytest.raises(StoreError, match="view 'one' has no rows for word2vec-.*: nothing to index"):
        build_index("one", store=sms_view)


def test_cli_search_and_bad_input(sms_view, cli):
    code, out, err = cli("index", "build", "--view", "sms", "--store", sms_view.root, "--json")
    assert code == 0, err
    assert json.loads(out)["recall_at_10"] == 1.0
    code, out, _ = cli("search", "--view", "sms", "--store", sms_view.root, "--text", "free entry", "--text", "see you later", "-k", "2", "--json")
    results = json.loads(out)
    assert code == 0 and [len(r) for r in results] == [2, 2]
    code, _, err = cli("search", "--view", "sms", "--store", sms_view.root, "--id", "nope")
    assert code == 2 and err.strip() == "featurestore: error: id(s) 'nope' are not in view 'sms'"
    code, _, err = cli("index", "build", "--view", "missing", "--store", sms_view.root)
    assert code == 2 and "view 'missing' does not exist" in err


CRAN = DATA / "search" / "cranfield"


def cranfield(path, field: str = ".W") -> list[tuple[str, str]]:
    records, current, key, text = [], None, None, []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(".I "):
            if current is not None:
                records.append((current, " ".join(text)))
            current, key, text = line.split()[1], None, []
        elif line.startswith(".") and len(line) == 2:
            key = line
        elif key in (".T", field):
            text.append(line.strip())
    records.append((current, " ".join(text)))
    return records


@pytest.mark.slow
def test_cranfield_queries_get_the_exact_top_10(tmp_path, minilm):
    """150 Cranfield queries against the first 500 of its documents embedded with minilm, through an
    HNSW index (the whole 1,400 took ~40 s of the suite for the same check)."""
    need(CRAN)
    docs = cranfield(CRAN / "cran.all.1400")
    assert len(docs) == 1400 and sum(1 for _, t in docs if not t.strip()) == 2  # two Cranfield documents are empty
    docs = docs[:500]
    source = tmp_path / "cran.jsonl"
    source.write_text("\n".join(json.dumps({"id": d, "text": t}) for d, t in docs) + "\n")
    materialize(TextSource(str(source), id_col="id"), "cran", "minilm", store=tmp_path / "s", encoder_options={"device": "cpu"})
    info = build_index("cran", store=tmp_path / "s", index_type="hnsw", target_recall=0.95).info
    assert info.rows == sum(1 for _, t in docs if t.strip())
    queries = [t for _, t in cranfield(CRAN / "cran.qry")]
    assert len(queries) == 150
    results = search("cran", store=tmp_path / "s", texts=queries, k=10)
    frame = Store(tmp_path / "s").resolve_table("cran").latest([])
    q = minilm.encode(queries)
    truth = [set(frame.ids[np.argsort(-(frame.vectors @ v))[:10]].tolist()) for v in q]
    overlap = np.mean([len(t & {h["entity_id"] for h in hits}) / 10 for t, hits in zip(truth, results)])
    assert overlap >= 0.95


def test_update_adds_new_and_changed_rows_and_removes_replaced_ones(sms_view, sms_lines, tmp_path, word2vec):
    build_index("sms", store=sms_view, index_type="ivf")
    lines = list(sms_lines[:300])
    for i in range(0, 50, 5):  # 10 changed texts
        label, text = lines[i].split("\t", 1)
        lines[i] = f"{label}\t{text} zebra giraffe"
    lines += ["spam\tbrand new message about a cheap cruise", "ham\tanother new line about dinner plans"]
    path = tmp_path / "changed.sms"
    path.write_text("\n".join(lines) + "\n")
    materialize(TextSource(str(path), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=sms_view)
    result = update_index("sms", store=sms_view)
    assert (result.rebuilt, result.added, result.removed, result.info.rows) == (False, 12, 10, 302)
    [hits] = search("sms", store=sms_view, texts=["brand new message about a cheap cruise"], k=1)
    assert hits[0]["entity_id"] == "301"
    again = update_index("sms", store=sms_view)
    assert (again.added, again.removed) == (0, 0)


def test_update_rebuilds_when_most_vectors_were_replaced(sms_view, sms_file):
    build_index("sms", store=sms_view)
    materialize(TextSource(str(sms_file(100, name="few.sms")), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec",
                store=sms_view, full_sync=True)
    result = update_index("sms", store=sms_view)
    assert result.rebuilt and result.removed == 200 and result.info.rows == 100


def test_info_shows_index_coverage_and_staleness(sms_view, sms_file, cli):
    build_index("sms", store=sms_view)
    materialize(TextSource(str(sms_file(310, name="more.sms")), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=sms_view)
    [table] = sms_view.info()
    status = index_status(table, store=sms_view)
    assert status["rows"] == 300 and status["coverage"] == pytest.approx(300 / 310, abs=1e-4)
    assert status["versions_behind"] >= 1
    code, out, _ = cli("index", "update", "--view", "sms", "--store", sms_view.root, "--json")
    assert code == 0 and json.loads(out)["added"] == 10
    [table] = sms_view.info()
    status = index_status(table, store=sms_view)
    assert (status["coverage"], status["versions_behind"]) == (1.0, 0)
    code, out, _ = cli("info", "--store", sms_view.root, "--json")
    [shown] = json.loads(out)["tables"]
    assert code == 0 and shown["index"] == status and list(shown)[-3:] == ["path", "index", "index_status"]


@pytest.mark.parametrize("exact_below", [20_000, 1])  # exact on the subset, and the index with an ID selector
def test_filtered_search_returns_k_matching_rows(sms_view, exact_below):
    build_index("sms", store=sms_view, index_type="ivf")
    spam = sum(1 for label in sms_view.resolve_table("sms").latest(["label"]).columns.column("label").to_pylist() if label == "spam")
    [hits] = search("sms", store=sms_view, texts=["see you at dinner tonight"], k=10, where="label = 'spam'", exact_below=exact_below)
    assert len(hits) == 10 and all(h["label"] == "spam" for h in hits)
    [few] = search("sms", store=sms_view, texts=["hello"], k=500, where="label = 'spam' AND NOT label IS NULL", exact_below=exact_below)
    assert len(few) == spam  # fewer rows match than k: all of them


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("lable = 'spam'", "no column 'lable'; the view's columns are: label. Did you mean 'label'?"),
        ("read_csv('/etc/passwd') IS NOT NULL", "function calls such as read_csv(...) are not allowed"),
        ("label = (SELECT 1)", "no column 'SELECT'"),
        ("label = 'spam'; DROP TABLE x", "';' is not allowed"),
        ("label = = 'x'", "cannot be evaluated"),
        ("", "the filter is empty"),
    ],
)
def test_filters_that_do_more_than_compare_columns_are_refused(sms_view, where, message):
    build_index("sms", store=sms_view)
    with pytest.raises(StoreError, match=re.escape(message)):
        search("sms", store=sms_view, ids=["3"], where=where)


def test_cli_where_filter_and_its_errors(sms_view, cli):
    assert cli("index", "build", "--view", "sms", "--store", sms_view.root)[0] == 0
    code, out, _ = cli("search", "--view", "sms", "--store", sms_view.root, "--id", "3", "--where", "label = 'ham'", "-k", "3", "--json")
    assert code == 0 and {h["label"] for h in json.loads(out)[0]} == {"ham"}
    code, out, err = cli("search", "--view", "sms", "--store", sms_view.root, "--id", "3", "--where", "read_csv('/etc/passwd') = 1")
    assert code == 2 and err.count("\n") == 1 and "function calls such as read_csv(...) are not allowed" in err and not out


def _synthetic_rows(ids: list[str], vectors: np.ndarray, *, deleted: bool = False):
    from datetime import datetime, timezone

    import pyarrow as pa

    from featurestore.store import vectors_to_binary
    from featurestore.store.schema import TIMESTAMP

    now, n = datetime.now(timezone.utc), len(ids)
    return pa.table({
        "entity_id": pa.array(ids), "content_hash": pa.array([f"{e}:{v[0]:.6f}" for e, v in zip(ids, vectors)]),
        "encoder_id": pa.array(["synth-1"] * n), "embedding": pa.nulls(n, pa.binary()) if deleted else vectors_to_binary(vectors),
        "event_timestamp": pa.array([now] * n, TIMESTAMP), "created_at": pa.array([now] * n, TIMESTAMP), "deleted": pa.array([deleted] * n),
    })


def test_update_reads_only_the_rows_committed_since_the_index(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from featurestore.store import FeatureTable, TableMeta

    store = Store(tmp_path)
    meta = TableMeta(view="synth", encoder_id="synth-1", encoder_name="synth", encoder_spec={}, dim=16, metric="cosine", modality="text")
    table = store.table("synth", meta.encoder_id)
    x = clustered(2_100, 16)
    table.append(_synthetic_rows([f"e{i}" for i in range(2_000)], x[:2_000]), meta)
    build_index("synth", store=store, index_type="ivf")
    indexed_files = {p.removeprefix("file://") for p in table.delta().file_uris()}
    table.append(_synthetic_rows([f"e{i}" for i in range(2_000, 2_100)] + ["e7"], np.vstack([x[2_000:], x[:1] + 1])), meta)
    table.append(_synthetic_rows(["e8"], np.zeros((1, 16), np.float32), deleted=True), meta)

    def refuse(*args, **kwargs):
        raise AssertionError("update read the whole table")

    for name in ("state", "scan", "rows_with_hashes", "snapshot"):
        monkeypatch.setattr(FeatureTable, name, refuse)
    read: list[str] = []
    real_read = pq.read_table
    monkeypatch.setattr(pq, "read_table", lambda source, *a, **k: read.append(str(source)) or real_read(source, *a, **k))
    result = update_index("synth", store=store)
    assert (result.rebuilt, result.added, result.removed, result.info.rows) == (False, 101, 2, 2_099)
    data_files = [p for p in read if p.endswith(".parquet") and "indexes" not in p]
    assert len(data_files) == 2 and not set(data_files) & indexed_files
    monkeypatch.undo()
    [hits] = search("synth", store=store, vectors=x[2_050:2_051], k=1)
    assert hits[0]["entity_id"] == "e2050"
    assert not {"e8"} & {h["entity_id"] for h in search("synth", store=store, vectors=x[8:9], k=5)[0]}


def test_update_after_compaction_compares_full_states(tmp_path):
    from featurestore.store import TableMeta

    store = Store(tmp_path)
    meta = TableMeta(view="synth", encoder_id="synth-1", encoder_name="synth", encoder_spec={}, dim=16, metric="cosine", modality="text")
    table = store.table("synth", meta.encoder_id)
    x = clustered(300, 16)
    table.append(_synthetic_rows([f"e{i}" for i in range(200)], x[:200]), meta)
    build_index("synth", store=store)
    table.append(_synthetic_rows([f"e{i}" for i in range(200, 300)], x[200:]), meta)
    table.compact()  # the new file holds old rows too: appended files no longer tell the change
    result = update_index("synth", store=store)
    assert (result.rebuilt, result.added, result.removed, result.info.rows) == (False, 100, 0, 300)


def test_ensure_index_builds_when_there_is_none_then_updates(sms_view, sms_file):
    from featurestore import ensure_index

    built = ensure_index("sms", store=sms_view, index_type="flat", target_recall=0.9)
    assert (built.rebuilt, built.added, built.removed, built.seconds) == (True, None, None, None)
    assert (built.info.factory, built.info.rows, built.info.target_recall) == ("Flat", 300, 0.9)
    assert list(built.to_dict())[:4] == ["rebuilt", "added", "removed", "view"]
    before = set(sms_view.resolve_table("sms").latest().ids.tolist())
    materialize(TextSource(str(sms_file(320, name="more.sms")), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec",
                store=sms_view)
    updated = ensure_index("sms", store=sms_view, index_type="hnsw")  # an index exists: updated, the build options unused
    assert (updated.rebuilt, updated.added, updated.removed, updated.info.factory, updated.info.rows) == (False, 20, 0, "Flat", 320)
    assert updated.info.table_version == sms_view.resolve_table("sms").version()
    assert list(updated.to_dict())[:5] == ["rebuilt", "added", "removed", "seconds", "view"]
    [new] = sorted(set(sms_view.resolve_table("sms").latest().ids.tolist()) - before)[:1]
    [hits] = search("sms", store=sms_view, ids=[new], k=1)
    assert hits[0]["entity_id"] == new
