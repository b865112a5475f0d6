"""Ranking from the command line: Cranfield and BEIR files as sources and judgments, the query
numbering check, and predict --top-k (100 Cranfield documents, word2vec, no Prefect)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from featurestore.sources import normalize_text, open_source
from featurestore.sources.formats import read_cranfield
from featurestore.store import Store
from flows.cli.main import main
from models.ir import load_docs, load_qrels, load_queries
from tests.conftest import DATA, assert_user_error, need, snapshot

CRAN = DATA / "search" / "cranfield"
N_DOCS = 100


def fields(path, *names: str) -> dict[str, str]:
    return {r["id"]: r["text"] for _, r in read_cranfield(path, names)[1]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The first 100 Cranfield documents as cran.all.1400 and as BEIR files, with the 47 queries
    that judge one of them relevant (BEIR ids q<position>, d<.I>) and their judgments."""
    need(CRAN)
    root = tmp_path_factory.mktemp("ir-files")
    text = (CRAN / "cran.all.1400").read_text(encoding="utf-8")
    cran = root / "cran.all.1400"
    cran.write_text(text[: text.index(f"\n.I {N_DOCS + 1}\n") + 1], encoding="utf-8")
    titles, bodies = fields(cran, ".T"), fields(cran, ".W")
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{d}", "title": titles[d], "text": bodies[d]}) + "\n" for d in titles), encoding="utf-8"
    )
    queries = load_queries(CRAN / "cran.qry", "position")
    judged = [(q, d, g) for q, d, g in load_qrels(CRAN / "cranqrel") if int(d) <= N_DOCS]
    asked = sorted({q for q, _, g in judged if g > 0}, key=int)
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{q}", "text": queries[q]}) + "\n" for q in asked))
    (root / "qrels").mkdir()
    rows = [f"q{q}\td{d}\t{int(g)}\n" for q, d, g in judged if q in asked]
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(rows))
    (root / "qrels" / "positions.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{n}\td{d}\t{int(g)}\n" for n, q in enumerate(asked, 1) for qq, d, g in judged if qq == q))
    return {"root": root, "cran": cran, "titles": titles, "bodies": bodies, "asked": asked, "judgments": len(rows)}


def run(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def store(files, tmp_path_factory, word2vec):
    """Views 'cran' (--format cranfield) and 'corpus' (--format beir), and ranking model 'beir-rank' v1."""
    root = tmp_path_factory.mktemp("ir-store") / "store"
    common = ("--encoder", "word2vec", "--store", root, "--runner", "inline", "--json")
    assert run("materialize", files["cran"], "--format", "cranfield", "--view", "cran", *common) == 0
    assert run("materialize", files["root"] / "corpus.jsonl", "--format", "beir", "--view", "corpus", *common) == 0
    assert run("train", "ranking", "--view", "corpus", "--queries", files["root"] / "queries.jsonl",
               "--qrels", files["root"] / "qrels" / "test.tsv", "--folds", "3", "--name", "beir-rank",
               "--store", root, "--runner", "inline", "--json") == 0
    return root


def test_format_cranfield_gives_one_row_per_document_with_its_id_and_title_plus_body(files, store):
    table = Store(store).resolve_table("cran")
    assert sorted(table.state(), key=int) == [str(i) for i in range(1, N_DOCS + 1)]
    records = {e: c for b in open_source(files["cran"], format="cranfield").batches() for e, c in zip(b.entity_id, b.content)}
    assert len(records) == N_DOCS
    assert records["1"] == normalize_text(files["titles"]["1"] + " " + files["bodies"]["1"])
    assert records["1"].startswith("experimental investigation of the aerodynamics of a wing in a slipstream . experimental")
    assert load_docs(files["cran"]) == {d: files["titles"][d] + " " + files["bodies"][d] for d in files["titles"]}  # BM25 reads the same


def test_beir_corpus_queries_and_qrels_read_with_their_ids(files, store):
    root = files["root"]
    assert sorted(Store(store).resolve_table("corpus").state(), key=lambda d: int(d[1:])) == [f"d{i}" for i in range(1, N_DOCS + 1)]
    docs = load_docs(root / "corpus.jsonl")
    assert docs["d7"] == files["titles"]["7"] + " " + files["bodies"]["7"]
    queries = load_queries(root / "queries.jsonl")
    assert list(queries) == [f"q{q}" for q in files["asked"]] and len(queries) == 47
    assert queries["q3"].startswith("what problems of heat conduction in composite slabs")
    judgments = load_qrels(root / "qrels" / "test.tsv")  # the header line is not a judgment
    assert len(judgments) == files["judgments"] and judgments[0] == ("q1", "d29", 3.0)


def test_train_ranking_on_beir_files_scores_every_judged_query(files, store):
    from models.registry import load_model

    model = load_model("beir-rank", 1, store=store)
    report = json.loads((model.path / "report.json").read_text())
    assert (report["queries"], report["judgments"], model.manifest["params"]["qrels_by"]) == (47, 100, "id")
    assert report["dropped_judgments"] == {"unknown_query": 0, "unknown_doc": 0}
    metrics = model.manifest["metrics"]
    assert 0.2 < metrics["bm25_ndcg@10"] <= 1.0 and 0.0 < metrics["ndcg@10"] <= 1.0


def test_predict_ranking_top_k_returns_the_best_n_documents_with_scores(store, cli):
    code, out, err = cli("predict", "beir-rank", "shock waves in a slipstream", "heat conduction in slabs",
                         "--top-k", "3", "--store", store, "--json")
    assert code == 0, err
    results = json.loads(out)
    assert [r["id"] for r in results] == ["0", "1"]
    for r in results:
        scores = [d["score"] for d in r["documents"]]
        assert len(scores) == 3 and scores == sorted(scores, reverse=True)
        assert (r["label"], r["score"]) == (r["documents"][0]["entity_id"], scores[0])
        assert {d["entity_id"] for d in r["documents"]} <= {f"d{i}" for i in range(1, N_DOCS + 1)}
    code, out, _ = cli("predict", "beir-rank", "shock waves in a slipstream", "--store", store, "--json")
    assert code == 0 and len(json.loads(out)[0]["documents"]) == 10  # the default
    assert [d["entity_id"] for d in json.loads(out)[0]["documents"][:3]] == [d["entity_id"] for d in results[0]["documents"]]
    code, out, _ = cli("predict", "beir-rank", "shock waves", "--top-k", "2", "--store", store)
    assert code == 0 and out.count("(") >= 2  # the table lists each document with its score
    assert_user_error(cli("predict", "beir-rank", "shock waves", "--top-k", "0", "--store", store),
                      "--top-k must be a whole number >= 1; got 0")


def test_judgments_numbered_by_position_are_refused_naming_the_numbering(files, store, cli):
    before = snapshot(store)
    cran = ("train", "ranking", "--view", "cran", "--queries", CRAN / "cran.qry", "--qrels", CRAN / "cranqrel", "--store", store)
    assert_user_error(cli(*cran), "cranqrel: qrels query ids 1..150: 107 of them match no query id; cran.qry's ids run "
                                  "001..223 with gaps: Cranfield's cranqrel numbers queries by position, use --qrels-by position")
    beir = ("train", "ranking", "--view", "corpus", "--queries", files["root"] / "queries.jsonl", "--store", store)
    assert_user_error(cli(*beir, "--qrels", files["root"] / "qrels" / "positions.tsv"),
                      "positions.tsv: qrels query ids 1..47: match no query id; queries.jsonl's ids run q1, q2, q3 ... (47 ids): "
                      "the judgments number queries by position, use --qrels-by position")
    assert_user_error(cli(*beir, "--qrels", files["root"] / "qrels" / "test.tsv", "--qrels-by", "position"),
                      "test.tsv: qrels query ids q1, q2, q3 ... (47 ids): match no query position; queries.jsonl's positions run 1..47: "
                      "the judgments name queries by their ids, use --qrels-by id")
    assert_user_error(cli(*beir, "--qrels", files["root"] / "qrels" / "test.tsv", "--qrels-by", "order"),
                      "--qrels-by must be one of: id, position. Got 'order' instead.")
    assert snapshot(store) == before


def test_cranqrel_by_position_trains_on_the_cranfield_view(store, cli):
    code, out, err = cli("train", "ranking", "--view", "cran", "--queries", CRAN / "cran.qry", "--qrels", CRAN / "cranqrel",
                         "--qrels-by", "position", "--folds", "3", "--name", "cran-rank", "--store", store, "--runner", "inline", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["task"] == "ranking" and 0.0 < summary["metrics"]["ndcg@10"] <= 1.0


def test_evaluate_scores_a_ranking_head_on_judged_queries_beside_bm25_and_dense(files, store, cli):
    from models.registry import load_model

    root = files["root"]
    new = ("--queries", root / "queries.jsonl", "--qrels", root / "qrels" / "test.tsv")
    code, out, err = cli("evaluate", "beir-rank", *new, "--store", store, "--json")
    assert code == 0, err
    result = json.loads(out)
    recorded = load_model("beir-rank", 1, store=store).manifest["metrics"]
    assert result["task"] == "ranking" and result["rows"] == 47
    assert set(result["metrics"]) == {"ndcg@10", "mrr@10", "recall@100"} and 0.0 < result["metrics"]["ndcg@10"] <= 1.0
    # BM25 and dense retrieval alone do not train: on the training queries they score what training recorded
    assert result["baselines"]["bm25"]["ndcg@10"] == pytest.approx(recorded["bm25_ndcg@10"])
    assert result["baselines"]["dense"]["ndcg@10"] == pytest.approx(recorded["dense_ndcg@10"])
    saved = json.loads((Path(store) / "models" / "beir-rank" / "1" / "evaluations.json").read_text())
    assert [e["input_sha256"] for e in saved] == [result["input_sha256"]]
    code, out, err = cli("evaluate", "beir-rank", *new, "--store", store)
    assert code == 0 and "bm25" in out and "ndcg@10" in out, err

    before = snapshot(store)
    assert_user_error(cli("evaluate", "beir-rank", "--qrels", root / "qrels" / "test.tsv", "--store", store),
                      "a ranking head is evaluated on --queries FILE and --qrels FILE together")
    assert_user_error(cli("evaluate", "beir-rank", *new, "--qrels-by", "position", "--store", store),
                      "match no query position; queries.jsonl's positions run 1..47: the judgments name queries by their ids, use --qrels-by id")
    assert_user_error(cli("evaluate", "beir-rank", *new, "--qrels-by", "order", "--store", store),
                      "--qrels-by must be one of: id, position. Got 'order' instead.")
    assert_user_error(cli("evaluate", "beir-rank", "--view", "corpus", "--store", store),
                      "a token --view scores NER heads; model beir-rank v1 is a ranking head")
    assert snapshot(store) == before
