"""Candidate retrieval for search ranking: BM25 and dense top-N of a view, and the features of each pair.

For each query the candidates are the union of BM25's top ``n_candidates`` (bm25s over the
documents' texts) and the view's FAISS top ``n_candidates`` (the query encoded with the view's
own encoder). Each (query, document) pair gets the :data:`FEATURES` the two retrievers disagree
on (dense cosine, word2vec cosine, BM25 score, their ranks and per-query normalisations, query
term coverage). :mod:`models.ranking` fits and applies the head that orders them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featurestore.encoders import BaseEncoder, get_encoder
from featurestore.errors import DependencyError, SourceError
from featurestore.index.queries import search
from featurestore.index.lifecycle import build_index, has_index, view_encoder
from featurestore.store import FeatureTable, Store
from featurestore.vectors import prepare

__all__ = ["BM25_SETTINGS", "FEATURES", "Candidates", "Retriever", "open_retriever"]

FEATURES = (
    "dense_cos", "dense_gap", "dense_log_rank", "w2v_cos",
    "bm25", "bm25_norm", "bm25_log_rank", "query_coverage",
)  # fmt: skip
BM25_SETTINGS = {"method": "lucene", "k1": 1.2, "b": 0.75, "stopwords": "en", "stemmer": "english"}


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
