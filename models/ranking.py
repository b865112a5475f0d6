"""Search ranking: BM25 and dense candidates from a view, re-ranked by a learned scikit-learn head.

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
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.encoders import BaseEncoder, get_encoder
from featurestore.errors import DependencyError, EncoderError, InvalidArgumentError, SourceError, StoreError
from featurestore.index.search import build_index, has_index, search, view_encoder
from featurestore.manifest import TrainingManifest, encoder_entry, make_manifest
from featurestore.progress import ProgressFn, Steps
from featurestore.sources.content import file_sha256
from featurestore.store import FeatureTable, Store
from featurestore.vectors import prepare
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

FEATURES = (
    "dense_cos", "dense_gap", "dense_log_rank", "w2v_cos",
    "bm25", "bm25_norm", "bm25_log_rank", "query_coverage",
)  # fmt: skip
BM25_SETTINGS = {"method": "lucene", "k1": 1.2, "b": 0.75, "stopwords": "en", "stemmer": "english"}


# ---------------------------------------------------------------------------------- retrieval
@dataclass
class Candidates:
    """One query's candidate docs with their features, and what each retriever alone returns."""

    query_id: str
    doc_ids: list[str]
    features: np.ndarray  # (len(doc_ids), len(FEATURES)) float32
    bm25_ranking: list[str]
    dense_ranking: list[str]


@dataclass
class Retriever:
    """What candidate generation needs, loaded once: the dense view, BM25 over the texts, word2vec."""

    store: Store
    table: FeatureTable
    encoder: BaseEncoder
    doc_ids: np.ndarray  # the view's entity ids, the BM25 corpus order
    dense_vectors: np.ndarray  # (n, dim) unit rows, aligned with doc_ids
    w2v_encoder: BaseEncoder
    w2v_vectors: np.ndarray  # (n, dim_w2v) unit rows (zero where a doc has no known word)
    doc_terms: list[set[str]]
    bm25: Any
    stem: Any
    n_candidates: int

    def tokenize(self, texts: Sequence[str]) -> list[list[str]]:
        import bm25s

        stopwords = BM25_SETTINGS["stopwords"]
        out = bm25s.tokenize(list(texts), stopwords=stopwords, stemmer=self.stem, return_ids=False, show_progress=False)
        return [list(t) for t in out]

    def candidates(self, qids: Sequence[str], texts: Sequence[str]) -> list[Candidates]:
        """Retrieve and describe the union of BM25 and dense top-N for each query."""
        dense_q = prepare(self.encoder.encode(texts), "cosine")
        w2v_q = prepare(self.w2v_encoder.encode(texts), "cosine")
        n = min(self.n_candidates, len(self.doc_ids))
        hits = search(self.table.meta.view, self.table.meta.encoder_id, store=self.store, vectors=dense_q, k=n)
        where = {d: i for i, d in enumerate(self.doc_ids.tolist())}
        out = []
        for i, (qid, terms) in enumerate(zip(qids, self.tokenize(texts))):
            bm25 = self.bm25.get_scores(terms) if terms else np.zeros(len(self.doc_ids), np.float32)
            bm25_top = np.argsort(-bm25, kind="stable")[:n]
            dense_top = [where[h["entity_id"]] for h in hits[i] if h["entity_id"] in where]  # a stale index may hold removed ids
            rows = np.array(sorted(set(bm25_top.tolist()) | set(dense_top)))
            features = _features(
                rows, dense_q[i] @ self.dense_vectors[rows].T, self.w2v_vectors[rows] @ w2v_q[i], bm25,
                _ranks(rows, bm25_top, n), _ranks(rows, np.array(dense_top), n), set(terms), [self.doc_terms[r] for r in rows],
            )  # fmt: skip
            ids = self.doc_ids[rows].tolist()
            out.append(Candidates(qid, ids, features, self.doc_ids[bm25_top].tolist(), self.doc_ids[dense_top].tolist()))
        return out


def _ranks(rows: np.ndarray, top: np.ndarray, n: int) -> np.ndarray:
    """1-based rank of each row in a top-n list; n + 1 for rows the list does not hold."""
    rank = {r: i + 1 for i, r in enumerate(top.tolist())}
    return np.array([rank.get(r, n + 1) for r in rows.tolist()], dtype=np.float32)


def _features(
    rows: np.ndarray, dense: np.ndarray, w2v: np.ndarray, bm25_all: np.ndarray,
    bm25_rank: np.ndarray, dense_rank: np.ndarray, query_terms: set[str], doc_terms: list[set[str]],
) -> np.ndarray:  # fmt: skip
    """The FEATURES columns; scores are also given relative to the query's best, since raw BM25
    and cosine scales vary from query to query while a head learns one weight per feature."""
    bm25 = bm25_all[rows]
    best = float(bm25_all.max())
    coverage = [len(query_terms & t) / len(query_terms) if query_terms else 0.0 for t in doc_terms]
    return np.column_stack([
        dense, dense - dense.max(), np.log(dense_rank), w2v,
        bm25, bm25 / best if best > 0 else np.zeros_like(bm25), np.log(bm25_rank), coverage,
    ]).astype(np.float32)  # fmt: skip


def _stemmer() -> Any:
    try:
        import bm25s  # noqa: F401
        import Stemmer
    except ImportError:
        raise DependencyError("ranking needs bm25s and PyStemmer; install the models extra: pip install 'featurestore[models]'") from None
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets its own logger to DEBUG
    return Stemmer.Stemmer(BM25_SETTINGS["stemmer"]).stemWords


def open_retriever(
    table: FeatureTable, texts: Mapping[str, str], *, store: Store, n_candidates: int, word2vec_view: str | None
) -> Retriever:
    """Load the view's vectors and encoder, index the texts with BM25 and get word2vec vectors."""
    import bm25s

    frame = table.latest([])
    missing = [d for d in frame.ids.tolist() if d not in texts]
    if missing:
        raise SourceError(f"the docs file lacks {len(missing)} of view {table.meta.view!r}'s ids (e.g. {missing[0]!r}); pass the file the view was materialized from")
    if not has_index(table.meta.view, table.meta.encoder_id, store=store):
        build_index(table.meta.view, table.meta.encoder_id, store=store)
    corpus = [texts[d] for d in frame.ids.tolist()]
    w2v_encoder, w2v_vectors = _word2vec(store, word2vec_view, frame.ids, corpus)
    bm25 = bm25s.BM25(**{k: BM25_SETTINGS[k] for k in ("method", "k1", "b")})
    retriever = Retriever(
        store, table, view_encoder(table), frame.ids, prepare(frame.vectors, "cosine"), w2v_encoder, w2v_vectors, [], bm25, _stemmer(), n_candidates
    )
    terms = retriever.tokenize(corpus)
    retriever.doc_terms = [set(t) for t in terms]
    bm25.index(terms, show_progress=False)
    return retriever


def _word2vec(store: Store, view: str | None, ids: np.ndarray, corpus: list[str]) -> tuple[BaseEncoder, np.ndarray]:
    """Word2vec doc vectors from a word2vec view of the same ids (zero for ids it lacks), else encoded now."""
    if view is None:
        encoder = get_encoder("word2vec")
        return encoder, prepare(encoder.encode(corpus), "cosine")
    table = store.resolve_table(view)
    frame = table.latest([])
    where = {d: i for i, d in enumerate(frame.ids.tolist())}
    vectors = np.zeros((len(ids), table.meta.dim), np.float32)
    found = [(i, where[d]) for i, d in enumerate(ids.tolist()) if d in where]
    if found:
        mine, theirs = map(list, zip(*found))
        vectors[mine] = frame.vectors[theirs]
    return view_encoder(table), prepare(vectors, "cosine")


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
    store = store if isinstance(store, Store) else Store(store)
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
