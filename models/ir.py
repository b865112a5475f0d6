"""Retrieval evaluation data and metrics: query, document and judgment files; nDCG, MRR, recall; query folds.

Readers take the Cranfield layout (``.I`` records with ``.T``/``.W`` fields, ``cranqrel`` with
graded relevance) and plain TSV or JSON Lines; metrics follow the usual IR definitions (nDCG
with exponential gains over graded judgments, MRR and recall at a cut-off).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from featurestore.errors import SourceError

CRANFIELD_GAIN = {1: 4.0, 2: 3.0, 3: 2.0, 4: 1.0, -1: 0.0}  # grade 1 = complete answer ... -1 = no interest
Qrels = dict[str, dict[str, float]]  # query id -> doc id -> gain


# ------------------------------------------------------------------------------- file formats
def read_cranfield(path: Path, fields: Sequence[str] = (".T", ".W")) -> list[tuple[str, str]]:
    """``(.I id, text)`` records of a Cranfield file, the text joining the given fields' lines."""
    records: list[tuple[str, str]] = []
    current: str | None = None
    key: str | None = None
    lines: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith(".I "):
            if current is not None:
                records.append((current, " ".join(lines)))
            current, key, lines = line.split()[1], None, []
        elif line.startswith(".") and len(line.rstrip()) == 2:
            key = line.rstrip()
        elif key in fields:
            lines.append(line.strip())
    if current is not None:
        records.append((current, " ".join(lines)))
    return records


def _is_cranfield(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        return handle.readline().startswith(".I ")


def _rows(path: Path, names: Sequence[str]) -> list[tuple[int, list[str]]]:
    """``(line, values)`` of a TSV (an optional header naming the columns) or JSONL file."""
    rows: list[tuple[int, list[str]]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
                rows.append((number, [str(record[n]) for n in names]))
            except (ValueError, KeyError, TypeError):
                raise SourceError(f"{path}: line {number} is not a JSON object with {', '.join(names)}") from None
        else:
            values = line.split("\t")
            if number == 1 and values[0].strip() in ("id", names[0]):
                continue
            if len(values) < len(names):
                raise SourceError(f"{path}: line {number} has {len(values)} TAB-separated columns; expected {', '.join(names)}")
            rows.append((number, [v.strip() for v in values[: len(names)]]))
    return rows


def existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{what} file not found: {path}")
    return path


def load_queries(path: str | Path) -> dict[str, str]:
    """Query id -> text. Cranfield ``cran.qry`` ids are positions (1, 2 ...), as its qrels use them;
    a TSV (``query_id<TAB>text``) or JSONL (``{"query_id", "text"}``) file keeps its own ids."""
    path = existing_file(path, "queries")
    if _is_cranfield(path):
        return {str(n): text for n, (_, text) in enumerate(read_cranfield(path, (".W",)), start=1)}
    return {qid: text for _, (qid, text) in _rows(path, ("query_id", "text"))}


def load_docs(path: str | Path) -> dict[str, str]:
    """Doc id -> text: Cranfield ``cran.all.1400`` (title and text, as the view encodes them), or a
    TSV (``id<TAB>text``) / JSONL (``{"id", "text"}``) file such as the one a view was materialized from."""
    path = existing_file(path, "docs")
    if _is_cranfield(path):
        return dict(read_cranfield(path))
    return {doc: text for _, (doc, text) in _rows(path, ("id", "text"))}


def load_qrels(path: str | Path) -> list[tuple[str, str, float]]:
    """``(query_id, doc_id, gain)``: ``.tsv``/``.jsonl`` files give the gain; any other name is read as
    Cranfield's ``query doc grade`` lines with gain = 5 - grade for 1..4 and 0 for -1."""
    path = existing_file(path, "qrels")
    if path.suffix in (".tsv", ".jsonl"):
        rows = _rows(path, ("query_id", "doc_id", "gain"))
        try:
            return [(q, d, float(g)) for _, (q, d, g) in rows]
        except ValueError:
            raise SourceError(f"{path}: a gain is not a number; the columns are query_id, doc_id, gain") from None
    judgments = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        grade = int(values[2]) if len(values) == 3 and values[2].lstrip("-").isdigit() else None
        if grade not in CRANFIELD_GAIN:
            raise SourceError(f"{path}: line {number} is not 'query doc grade' with a grade in 1..4 or -1")
        judgments.append((values[0], values[1], CRANFIELD_GAIN[grade]))
    return judgments


def check_qrels(
    judgments: Sequence[tuple[str, str, float]], queries: Mapping[str, str], doc_ids: set[str], *, strict: bool, where: str
) -> tuple[Qrels, dict[str, int]]:
    """Keep the judgments whose query and document exist; count (or, strict, refuse) the others."""
    if not judgments:
        raise SourceError(f"{where} has no judgments; a ranking head needs (query_id, doc_id, gain) rows")
    qrels: Qrels = {}
    dropped = {"unknown_query": 0, "unknown_doc": 0}
    for qid, doc, gain in judgments:
        reason = "unknown_query" if qid not in queries else "unknown_doc" if doc not in doc_ids else None
        if reason and strict:
            noun = f"query {qid!r}, which is not in the queries file" if reason == "unknown_query" else None
            noun = noun or f"doc {doc!r}, which is not in the view"
            raise SourceError(f"{where} judges {noun}; fix the file or run without strict to skip such rows")
        if reason:
            dropped[reason] += 1
        else:
            qrels.setdefault(qid, {})[doc] = gain
    if not qrels:
        raise SourceError(f"{where}: none of its {len(judgments)} judgments names a known query and a doc of the view")
    return qrels, dropped


# ------------------------------------------------------------------------------------ metrics
def _dcg(gains: Sequence[float]) -> float:
    return float(sum(g / np.log2(i + 2) for i, g in enumerate(gains)))


def ndcg_at_k(ranked: Sequence[str], judged: Mapping[str, float], k: int = 10) -> float:
    """nDCG@k with linear graded gains (trec_eval's form); the ideal ranks every judged doc."""
    ideal = _dcg(sorted(judged.values(), reverse=True)[:k])
    return _dcg([judged.get(d, 0.0) for d in ranked[:k]]) / ideal if ideal > 0 else 0.0


def mrr_at_k(ranked: Sequence[str], judged: Mapping[str, float], k: int = 10) -> float:
    """1 / rank of the first relevant (gain > 0) doc in the top k, else 0."""
    return next((1.0 / (i + 1) for i, d in enumerate(ranked[:k]) if judged.get(d, 0.0) > 0), 0.0)


def recall_at_k(ranked: Sequence[str], judged: Mapping[str, float], k: int = 100) -> float:
    """Share of the relevant (gain > 0) docs found in the top k."""
    relevant = {d for d, g in judged.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def evaluate(rankings: Mapping[str, Sequence[str]], qrels: Qrels) -> dict[str, float]:
    """The three metrics averaged over the queries with at least one relevant judged doc."""
    scored = [q for q in rankings if any(g > 0 for g in qrels.get(q, {}).values())]
    if not scored:
        return {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0}
    return {
        "ndcg@10": float(np.mean([ndcg_at_k(rankings[q], qrels[q]) for q in scored])),
        "mrr@10": float(np.mean([mrr_at_k(rankings[q], qrels[q]) for q in scored])),
        "recall@100": float(np.mean([recall_at_k(rankings[q], qrels[q]) for q in scored])),
    }


def query_folds(query_ids: Sequence[str], n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) positions into ``query_ids`` (one entry per pair): a query's pairs stay on one side."""
    from sklearn.model_selection import GroupKFold

    groups = np.asarray(query_ids, dtype=object)
    n_queries = len(set(groups.tolist()))
    if n_queries < n_splits:
        raise SourceError(f"{n_splits}-fold query cross-validation needs at least {n_splits} judged queries; got {n_queries}")
    return list(GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(groups, groups=groups))
