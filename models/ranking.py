"""Search ranking: BM25 and dense candidates from a view (:mod:`models.retrieval`), re-ranked by a learned scikit-learn head.

For each query the candidates are the union of BM25's top ``n_candidates`` (bm25s over the
documents' texts) and the view's FAISS top ``n_candidates`` (the query encoded with the view's
own encoder). Each (query, document) pair gets a few features that the two retrievers disagree
on (dense cosine, word2vec cosine, BM25 score, their ranks and per-query normalisations, query
term coverage), and a pointwise logistic regression, fitted on graded judgments (relevant =
gain > 0, weighted by gain), orders them. It is evaluated with query-level cross-validation
against BM25 alone and dense retrieval alone (nDCG@10, MRR@10, recall@100).

The documents' texts are not in the view (it stores vectors), so BM25 reads them from a file:
``docs=`` or, by default, the source file of the view's latest materialize run. The registry
does not copy that file: ``params`` keep its path and sha256, and ``predict`` re-reads it and
refuses a file that changed since training (the BM25 features would no longer be the ones the
head learned on).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.errors import EncoderError, InvalidArgumentError, SourceError, StoreError
from featurestore.manifest import TrainingManifest, encoder_entry, make_manifest
from featurestore.progress import ProgressFn, Steps
from featurestore.sources.content import file_sha256
from featurestore.store import FeatureTable, Store
from models.base import LoadedModel, TrainResult
from models.ir import (
    Qrels,
    QrelsBy,
    check_qrels,
    check_query_numbering,
    evaluate,
    existing_file,
    load_docs,
    load_qrels,
    load_queries,
    ndcg_at_k,
    query_folds,
)
from models.retrieval import BM25_SETTINGS, FEATURES, Candidates, Retriever, open_retriever


# ----------------------------------------------------------------------------------- the head
def make_head(seed: int = 0) -> Any:
    """The re-ranker, fixed up front: standardised features into a logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000, random_state=seed))


def pairs(cands: Sequence[Candidates], qrels: Qrels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, gains (0 for unjudged candidates) and the query of each (query, doc) pair."""
    x = np.concatenate([c.features for c in cands])
    gains = np.array([qrels.get(c.query_id, {}).get(d, 0.0) for c in cands for d in c.doc_ids], dtype=np.float32)
    groups = np.array([c.query_id for c in cands for _ in c.doc_ids], dtype=object)
    return x, gains, groups


def fit_head(head: Any, x: np.ndarray, gains: np.ndarray) -> Any:
    """Pointwise: relevant (gain > 0) vs not, each relevant pair weighted by its gain."""
    relevant = (gains > 0).astype(int)
    if relevant.min() == relevant.max():
        raise SourceError("the judgments give the candidates a single class; a re-ranker needs relevant and non-relevant pairs")
    return head.fit(x, relevant, logisticregression__sample_weight=np.where(gains > 0, gains, 1.0))


def rerank(head: Any, cand: Candidates) -> list[tuple[str, float]]:
    """The candidates by the head's probability of relevance, best first (ties by doc id)."""
    scores = head.predict_proba(cand.features)[:, 1]
    order = sorted(range(len(cand.doc_ids)), key=lambda i: (-scores[i], cand.doc_ids[i]))
    return [(cand.doc_ids[i], float(scores[i])) for i in order]


def cross_validate(cands: Sequence[Candidates], qrels: Qrels, *, n_splits: int, seed: int, steps: Steps | None = None) -> dict[str, Any]:
    """Held-out metrics of BM25, dense and the re-ranker: each fold's head never saw its test queries
    (``steps`` ticks once per fold)."""
    by_query = {c.query_id: c for c in cands}
    qids = np.array(list(by_query), dtype=object)
    ranked: dict[str, list[str]] = {}
    folds = []
    for train, test in query_folds(qids.tolist(), n_splits, seed):
        head = fit_head(make_head(seed), *pairs([by_query[q] for q in qids[train]], qrels)[:2])
        for q in qids[test]:
            ranked[q] = [d for d, _ in rerank(head, by_query[q])]
        folds.append({"test_queries": len(test), **evaluate({q: ranked[q] for q in qids[test]}, qrels)})
        if steps is not None:
            steps.tick()
    systems = {
        "bm25": evaluate({q: c.bm25_ranking for q, c in by_query.items()}, qrels),
        "dense": evaluate({q: c.dense_ranking for q, c in by_query.items()}, qrels),
        "reranker": evaluate(ranked, qrels),
    }
    per_query = {q: {name: ndcg_at_k(ranking, qrels[q]) for name, ranking in (("bm25", c.bm25_ranking), ("dense", c.dense_ranking), ("reranker", ranked[q]))}
                 for q, c in by_query.items() if any(g > 0 for g in qrels.get(q, {}).values())}
    return {"systems": systems, "folds": folds, "per_query_ndcg@10": per_query}


# ------------------------------------------------------------------------------ train / predict
def _docs_path(store: Store, table: FeatureTable, docs: str | Path | None) -> Path:
    """``docs`` when given, else the source of the view's newest materialize run."""
    if docs is not None:
        return existing_file(docs, "docs")
    try:
        source = store.view_source(table.meta.view, table.meta.encoder_id)
    except StoreError as exc:
        raise SourceError(f"{exc} as docs=PATH") from None
    return existing_file(source.path, "docs (the view's materialize source)")




def train(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    queries: str | Path,
    qrels: str | Path,
    docs: str | Path | None = None,
    word2vec_view: str | None = None,
    n_candidates: int = 100,
    n_splits: int = 5,
    seed: int = 0,
    strict: bool = False,
    qrels_by: QrelsBy = "id",
    rebuild: TrainingManifest | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit the re-ranker on every judged query after measuring it with query-level cross-validation.

    ``qrels_by`` says how the judgments name queries: by the queries file's ids (``id``) or by
    their position in it, 1, 2 ... (``position``, what Cranfield's ``cranqrel`` does).
    ``rebuild``: the judgments and files a training manifest names; the retriever reads the
    views' newest state, so they must still be at the versions it records.
    """
    started = time.perf_counter()
    store = Store.of(store)
    if rebuild is not None:
        args = rebuild.arguments
        view, encoder, word2vec_view = rebuild.view, rebuild.tables[0].encoder_id, args.get("word2vec_view")
        queries, qrels, docs, qrels_by = args["queries"], args["qrels"], args["docs"], args.get("qrels_by", qrels_by)
        _check_versions(store, rebuild)
    table = store.resolve_table(view, encoder)
    docs_path = _docs_path(store, table, docs)
    texts = load_queries(queries, qrels_by)
    judgments = load_qrels(qrels)
    check_query_numbering(judgments, queries, qrels_by, where=str(qrels))
    judged, dropped = check_qrels(judgments, texts, set(table.state()), strict=strict, where=str(qrels))
    if rebuild is not None and _judgments_hash(judged, texts) != rebuild.content_sha256:
        raise StoreError(f"the judgments in {qrels} do not rebuild the training set identically (content_sha256 differs); they changed since")
    steps = Steps(progress, n_splits + 1)
    retriever = open_retriever(table, load_docs(docs_path), n_candidates=n_candidates, word2vec_view=word2vec_view, store=store)
    cands = retriever.candidates(list(judged), [texts[q] for q in judged])
    features_s = time.perf_counter() - started
    cv = cross_validate(cands, judged, n_splits=n_splits, seed=seed, steps=steps)
    cv_s = time.perf_counter() - started - features_s
    x, gains, _ = pairs(cands, judged)
    head = fit_head(make_head(seed), x, gains)
    steps.tick()
    w2v_table = store.resolve_table(word2vec_view) if word2vec_view else None
    tables = [(table, table.version())] + ([(w2v_table, w2v_table.version())] if w2v_table is not None else [])
    return TrainResult(
        task="ranking",
        head=head,
        metrics=headline(cv["systems"]),
        report={
            **cv,
            "queries": len(judged),
            "judgments": sum(len(d) for d in judged.values()),
            "dropped_judgments": dropped,
            "pairs": len(gains),
            "relevant_pairs": int((gains > 0).sum()),
            "seconds": {
                "features": round(features_s, 3),
                "cross_validation": round(cv_s, 3),
                "total": round(time.perf_counter() - started, 3),
            },
        },
        training_manifest=make_manifest(
            tables,
            arguments={"view": table.meta.view, "encoder": table.meta.encoder_id, "queries": str(Path(queries).absolute()),
                       "qrels": str(Path(qrels).absolute()), "docs": str(docs_path.absolute()), "word2vec_view": word2vec_view,
                       "qrels_by": qrels_by, "strict": strict, "n_splits": n_splits, "seed": seed},
            content_sha256=_judgments_hash(judged, texts),
            rows=len(gains),
            kind="judgments",
            details={"split": "GroupKFold by query", "queries": len(judged)},
        ),
        encoders=[
            encoder_entry(table),
            encoder_entry(w2v_table) if w2v_table is not None else encoder_entry(encoder=retriever.w2v_encoder, view=None),
        ],
        params={
            "view": table.meta.view,
            "encoder_id": table.meta.encoder_id,
            "word2vec_view": word2vec_view,
            "n_candidates": n_candidates,
            "features": list(FEATURES),
            "bm25": dict(BM25_SETTINGS),
            "docs": str(docs_path.absolute()),
            "docs_sha256": file_sha256(docs_path),
            "head": "StandardScaler+LogisticRegression(C=1.0)",
            "n_splits": n_splits,
            "seed": seed,
            "strict": strict,
            "qrels_by": qrels_by,
        },
    )


def _check_versions(store: Store, manifest: TrainingManifest) -> None:
    """Refuse to rebuild from a manifest whose tables moved: the retriever reads their newest state."""
    for entry in manifest.tables:
        now = store.resolve_table(entry.view, entry.encoder_id).version()
        if now != entry.version:
            raise StoreError(
                f"{entry.view}/{entry.encoder_id} is at version {now}; the model was trained on version {entry.version}, "
                "and ranking reads the newest state, so it cannot be trained again on that set"
            )


def check_train_options(options: Mapping[str, Any]) -> None:
    """What training would refuse in the queries and judgments files alone (read, not scored):
    run before a training flow starts, so a mismatched numbering is one quick line."""
    if options.get("queries") is not None and options.get("qrels") is not None:
        check_query_numbering(load_qrels(options["qrels"]), options["queries"], options.get("qrels_by", "id"), where=str(options["qrels"]))


def headline(systems: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """The re-ranker's metrics, each baseline's beside them, and its nDCG@10 gain over the better baseline."""
    best_baseline = max(systems["bm25"]["ndcg@10"], systems["dense"]["ndcg@10"])
    return {
        **systems["reranker"],
        **{f"{name}_{metric}": v for name in ("bm25", "dense") for metric, v in systems[name].items()},
        "ndcg@10_gain_over_best_baseline": systems["reranker"]["ndcg@10"] - best_baseline,
    }


def _judgments_hash(judged: Qrels, texts: Mapping[str, str]) -> str:
    """sha256 of the sorted (query, doc, gain) rows and the judged queries' texts."""
    rows = sorted((q, d, g) for q, docs in judged.items() for d, g in docs.items())
    return hashlib.sha256(json.dumps([rows, [texts[q] for q in sorted(judged)]]).encode()).hexdigest()


def predict(model: LoadedModel, inputs: Sequence[Mapping[str, Any]], *, top_k: int = 10) -> list[dict[str, Any]]:
    """Each input ``{"id", "text"}`` is a query: retrieve, re-rank, return its top ``top_k`` docs.

    The store is the one the registry lives in (``<store>/models/<name>/<version>``). At most
    the candidates (the union of BM25's and the dense index's top ``n_candidates``) come back.
    """
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise InvalidArgumentError(f"`top_k` must be a whole number >= 1; got {top_k!r}")
    ids = [str(item.get("id", n)) for n, item in enumerate(inputs)]
    texts = [item.get("text") for item in inputs]
    empty = next((i for i, t in zip(ids, texts) if not isinstance(t, str) or not t.strip()), None)
    if empty is not None:
        raise SourceError(f"input {empty!r} has no text; a ranking query is {{'id', 'text'}}")
    if not ids:
        return []
    retriever = model_retriever(model)
    out = []
    for cand in retriever.candidates(ids, texts):
        ranked = rerank(model.head, cand)[:top_k]
        documents = [{"entity_id": d, "score": round(s, 6)} for d, s in ranked]
        out.append({"id": cand.query_id, "label": ranked[0][0], "score": round(ranked[0][1], 6), "documents": documents})
    return out


def model_retriever(model: LoadedModel) -> Retriever:
    """The candidate retriever a ranking model was trained with: its view, documents file
    (refused when it changed since) and word2vec view, with the model's own encoders."""
    params = model.manifest["params"]
    store = Store(model.store)
    table = store.resolve_table(params["view"], params["encoder_id"])
    docs_path = existing_file(params["docs"], "docs (recorded at training)")
    if file_sha256(docs_path) != params["docs_sha256"]:
        raise StoreError(f"{docs_path} changed since model {model.name!r} v{model.version} was trained; retrain it")
    retriever = open_retriever(table, load_docs(docs_path), n_candidates=params["n_candidates"], word2vec_view=params["word2vec_view"], store=store)
    trained_on = [e["encoder_id"] for e in model.manifest.get("encoders", [])]
    here = [retriever.encoder.encoder_id, retriever.w2v_encoder.encoder_id]
    if trained_on and trained_on != here:
        raise EncoderError(f"model {model.name!r} v{model.version} was trained on encoders {trained_on}, but they are {here} here; retrain it")
    return retriever


def evaluate_queries(model: LoadedModel, queries: str | Path, qrels: str | Path, *, qrels_by: QrelsBy = "id") -> dict[str, Any]:
    """nDCG@10, MRR@10 and recall@100 of ``model`` on new judged queries, beside BM25 alone and
    dense retrieval alone on the same queries (the baselines it was reported with).

    The queries and judgments are read and checked as ``train ranking`` reads them (their
    numbering, unknown queries and documents counted); returns ``rows`` (the judged queries),
    ``metrics`` (the re-ranker's), ``baselines`` and ``dropped_judgments``.
    """
    texts = load_queries(queries, qrels_by)
    judgments = load_qrels(qrels)
    check_query_numbering(judgments, queries, qrels_by, where=str(qrels))
    retriever = model_retriever(model)
    judged, dropped = check_qrels(judgments, texts, set(retriever.doc_ids.tolist()), strict=False, where=str(qrels))
    cands = retriever.candidates(list(judged), [texts[q] for q in judged])
    reranked = {c.query_id: [d for d, _ in rerank(model.head, c)] for c in cands}
    return {
        "rows": len(judged),
        "metrics": evaluate(reranked, judged),
        "baselines": {
            "bm25": {"name": "bm25", **evaluate({c.query_id: c.bm25_ranking for c in cands}, judged)},
            "dense": {"name": "dense", **evaluate({c.query_id: c.dense_ranking for c in cands}, judged)},
        },
        "dropped_judgments": dropped,
    }
