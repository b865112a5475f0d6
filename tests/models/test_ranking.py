"""Search ranking on Cranfield: file formats, metrics on hand-computed cases, the query-level split,
training with cross-validation against BM25 and dense retrieval, predict, and bad judgments."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from featurestore.errors import EncoderError, SourceError, StoreError
from featurestore.materialization import materialize
from featurestore.sources import TextSource, open_source
from models.base import LoadedModel
from models.ir import check_qrels, load_docs, load_qrels, load_queries, mrr_at_k, ndcg_at_k, query_folds, recall_at_k
from models.ranking import predict, train
from tests.conftest import DATA, need

CRAN = DATA / "search" / "cranfield"
QUERIES, QRELS, DOCS = CRAN / "cran.qry", CRAN / "cranqrel", CRAN / "cran.all.1400"


@pytest.fixture(scope="session")
def cran_store(tmp_path_factory, word2vec) -> Path:
    """The 1,400 Cranfield docs (title + text) as a word2vec view, read from cran.all.1400 itself."""
    need(CRAN)
    root = tmp_path_factory.mktemp("ranking")
    materialize(open_source(DOCS, format="cranfield"), "cran", "word2vec", store=root / "store")
    return root / "store"


@pytest.fixture(scope="session")
def trained(cran_store):
    return train("cran", queries=QUERIES, qrels=QRELS, qrels_by="position", store=cran_store)


def loaded(result, store: Path) -> LoadedModel:
    """The model as the registry would hand it back: under <store>/models/<name>/<version>."""
    return LoadedModel("cran-rank", 1, store / "models" / "cran-rank" / "1", result.head, {"task": "ranking", "params": result.params},
                       store=str(store))


# ------------------------------------------------------------------------------------ metrics
def test_metrics_match_hand_computed_values():
    judged = {"d2": 3.0, "d3": 1.0, "d9": 2.0, "d5": 0.0}
    ranked = ["d1", "d2", "d3", "d5"]
    dcg = 3 / math.log2(3) + 1 / math.log2(4)
    ideal = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, judged) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(ranked, judged, k=1) == 0.0
    assert ndcg_at_k(["d2", "d9", "d3"], judged) == pytest.approx(1.0)
    assert mrr_at_k(ranked, judged) == 0.5
    assert mrr_at_k(["d5", "d1"], judged) == 0.0  # a gain-0 judgment is not relevant
    assert mrr_at_k(["d1"] * 10 + ["d2"], judged) == 0.0  # beyond the cut-off
    assert recall_at_k(ranked, judged) == pytest.approx(2 / 3)
    assert recall_at_k(ranked, judged, k=2) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, {"d1": 0.0}) == recall_at_k(ranked, {}) == 0.0


def test_query_folds_never_split_a_query_and_test_each_once():
    groups = [f"q{i % 37}" for i in range(500)]
    folds = query_folds(groups, n_splits=5, seed=3)
    tested = []
    for train_rows, test_rows in folds:
        train_q = {groups[i] for i in train_rows}
        test_q = {groups[i] for i in test_rows}
        assert not train_q & test_q
        assert len(train_rows) + len(test_rows) == len(groups)
        tested += sorted(test_q)
    assert sorted(tested) == sorted(set(groups))
    again = query_folds(groups, n_splits=5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, query_folds(groups, n_splits=5, seed=4)))
    with pytest.raises(SourceError, match="needs at least 5 judged queries"):
        query_folds(["a", "b", "a"], n_splits=5)


# ------------------------------------------------------------------------------- file formats
def test_cranfield_files_read_by_id_or_position_with_graded_gains():
    need(CRAN)
    queries = load_queries(QUERIES, "position")
    assert len(queries) == 150 and list(queries)[:3] == ["1", "2", "3"]  # positions, as cranqrel numbers them
    assert queries["3"].startswith("what problems of heat conduction in composite slabs")
    by_id = load_queries(QUERIES)
    assert list(by_id)[:3] == ["001", "002", "004"] and by_id["004"] == queries["3"]
    judgments = load_qrels(QRELS)
    assert len(judgments) == 1154 and judgments[0] == ("1", "184", 3.0)
    assert {g for _, _, g in judgments} == {0.0, 1.0, 2.0, 3.0, 4.0}
    docs = load_docs(DOCS)
    assert len(docs) == 1400 and docs["1"].startswith("experimental investigation of the aerodynamics")


def test_generic_tsv_and_jsonl_forms(tmp_path):
    (tmp_path / "q.tsv").write_text("query_id\ttext\nq1\tshock waves\nq2\tboundary layer\n")
    (tmp_path / "q.jsonl").write_text('{"query_id": "q1", "text": "shock waves"}\n')
    (tmp_path / "r.tsv").write_text("q1\td7\t2\nq2\td8\t0.5\n")
    (tmp_path / "r.jsonl").write_text('{"query_id": "q1", "doc_id": "d7", "gain": 2}\n')
    (tmp_path / "d.tsv").write_text("d7\ta shock tube\n")
    assert load_queries(tmp_path / "q.tsv") == {"q1": "shock waves", "q2": "boundary layer"}
    assert load_queries(tmp_path / "q.jsonl") == {"q1": "shock waves"}
    assert load_qrels(tmp_path / "r.tsv") == [("q1", "d7", 2.0), ("q2", "d8", 0.5)]
    assert load_qrels(tmp_path / "r.jsonl") == [("q1", "d7", 2.0)]
    assert load_docs(tmp_path / "d.tsv") == {"d7": "a shock tube"}
    (tmp_path / "bad.tsv").write_text("q1\td7\tlots\n")
    with pytest.raises(SourceError, match="bad.tsv: a gain is not a number"):
        load_qrels(tmp_path / "bad.tsv")
    (tmp_path / "cranqrel").write_text("1 184 2\n1 29 7\n")
    with pytest.raises(SourceError, match="cranqrel: line 2 is not 'query doc grade'"):
        load_qrels(tmp_path / "cranqrel")
    with pytest.raises(SourceError, match="queries file not found"):
        load_queries(tmp_path / "missing.tsv")


# ------------------------------------------------------------------------------ bad judgments
def test_judgments_of_unknown_queries_or_docs_are_counted_or_refused():
    queries = {"1": "a", "2": "b"}
    judgments = [("1", "d1", 3.0), ("1", "d2", 0.0), ("9", "d1", 1.0), ("2", "zz", 2.0)]
    qrels, dropped = check_qrels(judgments, queries, {"d1", "d2"}, strict=False, where="qrels.tsv")
    assert qrels == {"1": {"d1": 3.0, "d2": 0.0}}
    assert dropped == {"unknown_query": 1, "unknown_doc": 1}
    with pytest.raises(SourceError, match="qrels.tsv judges query '9', which is not in the queries file"):
        check_qrels(judgments, queries, {"d1", "d2"}, strict=True, where="qrels.tsv")
    with pytest.raises(SourceError, match="qrels.tsv judges doc 'zz', which is not in the view"):
        check_qrels(judgments[3:], queries, {"d1"}, strict=True, where="qrels.tsv")
    with pytest.raises(SourceError, match="none of its 1 judgments names a known query"):
        check_qrels(judgments[2:3], queries, {"d1"}, strict=False, where="qrels.tsv")


def test_empty_qrels_and_strict_unknown_query_fail_before_any_work(cran_store, tmp_path):
    (tmp_path / "empty.tsv").write_text("")
    with pytest.raises(SourceError, match="empty.tsv has no judgments"):
        train("cran", queries=QUERIES, qrels=tmp_path / "empty.tsv", store=cran_store)
    (tmp_path / "extra.tsv").write_text("1\t184\t3\n151\t12\t2\n")
    with pytest.raises(SourceError, match="judges query '151', which is not in the queries file"):
        train("cran", queries=QUERIES, qrels=tmp_path / "extra.tsv", strict=True, qrels_by="position", store=cran_store)


def test_docs_come_from_the_views_run_record_or_a_clear_error(tmp_path, word2vec):
    need(CRAN)
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps({"id": d, "text": t}) + "\n" for d, t in list(load_docs(DOCS).items())[:50]))
    store = tmp_path / "store"
    materialize(TextSource(str(source), id_col="id"), "few", "word2vec", store=store)
    source.rename(tmp_path / "moved.jsonl")
    with pytest.raises(SourceError, match=r"the source of view 'few' \(.*docs.jsonl\) is gone; pass the source path as docs=PATH"):
        train("few", queries=QUERIES, qrels=QRELS, qrels_by="position", store=store)
    for run in (store / "runs").glob("*.json"):
        run.unlink()
    with pytest.raises(SourceError, match="view 'few' has no run record naming its source; pass the source path as docs=PATH"):
        train("few", queries=QUERIES, qrels=QRELS, qrels_by="position", store=store)


# ---------------------------------------------------------------------------- train / predict
def test_cross_validated_reranker_against_bm25_and_dense(trained):
    m = trained.metrics
    assert trained.report["queries"] == 150 and trained.report["judgments"] == 1153
    assert trained.report["dropped_judgments"] == {"unknown_query": 0, "unknown_doc": 1}  # cranqrel judges an empty doc
    assert 0.3 < m["bm25_ndcg@10"] < 0.5 and m["dense_ndcg@10"] < m["bm25_ndcg@10"]
    assert m["ndcg@10"] >= m["bm25_ndcg@10"] - 0.02 and m["recall@100"] >= m["bm25_recall@100"] - 0.02
    assert sum(f["test_queries"] for f in trained.report["folds"]) == 150
    per_query = trained.report["per_query_ndcg@10"]  # the report's per-query plot: its means are the headline figures
    for system, key in (("reranker", "ndcg@10"), ("bm25", "bm25_ndcg@10"), ("dense", "dense_ndcg@10")):
        assert sum(q[system] for q in per_query.values()) / len(per_query) == pytest.approx(m[key])
    assert trained.params["docs"] == str(DOCS.absolute())  # the view's own materialize source
    json.dumps([trained.params, trained.metrics, trained.report, trained.training_manifest.to_dict(), trained.encoders])


def test_evaluate_trains_it_again_on_the_judgments_its_manifest_names(trained, cran_store):
    from models.registry import load_model, save_model
    from models.tasks import reproduce

    manifest = trained.training_manifest
    assert (manifest.kind, manifest.view, [t.view for t in manifest.tables]) == ("judgments", "cran", ["cran"])
    assert manifest.arguments["qrels"] == str(QRELS.absolute()) and manifest.rows == trained.report["pairs"]
    saved = save_model("cran-again", trained, store=cran_store)
    check = reproduce(load_model("cran-again", saved.version, store=cran_store), store=cran_store)
    assert check.identical_metrics and check.identical_head and check.metrics == trained.metrics, check


def test_a_rebuild_is_refused_when_the_view_moved_or_the_judgments_changed(trained, cran_store, tmp_path):
    from dataclasses import replace

    from featurestore.store import Store

    manifest = trained.training_manifest
    table = Store(cran_store).resolve_table("cran")
    version, models = table.version(), sorted(p.name for p in (cran_store / "models").glob("*")) if (cran_store / "models").exists() else []
    moved = replace(manifest, tables=[replace(manifest.tables[0], version=manifest.tables[0].version + 1)])
    with pytest.raises(StoreError, match=rf"cran/{manifest.tables[0].encoder_id} is at version {version}; the model was trained on version {version + 1}, "
                                         "and ranking reads the newest state, so it cannot be trained again on that set"):
        train("cran", rebuild=moved, queries=QUERIES, qrels=QRELS, store=cran_store)
    lines = QRELS.read_text().splitlines()
    query, doc, grade = lines[0].split()
    changed = tmp_path / "cranqrel"
    changed.write_text("\n".join([f"{query} {doc} {int(grade) % 4 + 1}", *lines[1:]]) + "\n")  # one judgment's grade differs
    edited = replace(manifest, arguments={**manifest.arguments, "qrels": str(changed)})
    with pytest.raises(StoreError, match=rf"the judgments in {changed} do not rebuild the training set identically \(content_sha256 differs\); they changed since"):
        train("cran", rebuild=edited, queries=QUERIES, qrels=QRELS, store=cran_store)
    assert table.version() == version  # refused before any write
    assert (sorted(p.name for p in (cran_store / "models").glob("*")) if (cran_store / "models").exists() else []) == models


def test_predict_returns_ranked_documents(trained, cran_store):
    model = loaded(trained, cran_store)
    queries = load_queries(QUERIES, "position")
    out = predict(model, [{"id": "a", "text": queries["1"]}, {"id": "a", "text": queries["2"]}])
    assert [o["id"] for o in out] == ["a", "a"]
    for o in out:
        scores = [d["score"] for d in o["documents"]]
        assert len(scores) == 10 and scores == sorted(scores, reverse=True)
        assert o["label"] == o["documents"][0]["entity_id"] and o["score"] == scores[0]
    assert predict(model, []) == []
    with pytest.raises(SourceError, match="input 'x' has no text"):
        predict(model, [{"id": "x", "text": " "}])


def test_predict_refuses_changed_docs_or_encoders(trained, cran_store, tmp_path):
    changed = tmp_path / "cran.all.1400"
    changed.write_text(Path(trained.params["docs"]).read_text() + ".I 1401\n.T\na new doc\n")
    model = loaded(trained, cran_store)
    model.manifest["params"] = {**trained.params, "docs": str(changed)}
    with pytest.raises(StoreError, match="changed since model 'cran-rank' v1 was trained; retrain it"):
        predict(model, [{"id": "q", "text": "shock waves"}])
    other = loaded(trained, cran_store)
    other.manifest["encoders"] = [{**e, "encoder_id": "0123abcd"} for e in trained.encoders]
    with pytest.raises(EncoderError, match="was trained on encoders .*0123abcd.*; retrain it"):
        predict(other, [{"id": "q", "text": "shock waves"}])


@pytest.mark.slow
def test_minilm_view_with_a_word2vec_view_beside_it(tmp_path, minilm, cran_store):
    """A dense minilm view of ~200 docs and the word2vec view for the w2v feature, on 20 queries."""
    judgments = [j for j in load_qrels(QRELS) if int(j[0]) <= 20]
    keep = sorted({d for _, d, _ in judgments} | {str(i) for i in range(1, 60)}, key=int)
    docs = load_docs(DOCS)
    source = tmp_path / "sub.jsonl"
    source.write_text("".join(json.dumps({"id": d, "text": docs[d]}) + "\n" for d in keep))
    (tmp_path / "qrels.tsv").write_text("".join(f"{q}\t{d}\t{g}\n" for q, d, g in judgments))
    materialize(TextSource(str(source), id_col="id"), "cran-minilm", "minilm", store=cran_store, encoder_options={"device": "cpu"})
    result = train("cran-minilm", queries=QUERIES, qrels=tmp_path / "qrels.tsv", word2vec_view="cran", qrels_by="position", store=cran_store)
    assert result.report["queries"] == 20 and [e["view"] for e in result.encoders] == ["cran-minilm", "cran"]
    assert result.metrics["dense_ndcg@10"] > 0.3 and result.metrics["recall@100"] >= result.metrics["dense_recall@100"]
