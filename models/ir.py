"""Retrieval evaluation data and metrics: query, document and judgment files; nDCG, MRR, recall; query folds.

Readers take the Cranfield layout (``.I`` records with ``.T``/``.W`` fields, ``cranqrel`` with
graded relevance), BEIR's (``corpus.jsonl``, ``queries.jsonl``, ``qrels/*.tsv``) and plain TSV or
JSON Lines; metrics follow the usual IR definitions (nDCG
with exponential gains over graded judgments, MRR and recall at a cut-off).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from typing import Literal

import numpy as np

from featurestore.errors import SourceError
from featurestore.sources import formats

CRANFIELD_GAIN = {1: 4.0, 2: 3.0, 3: 2.0, 4: 1.0, -1: 0.0}  # grade 1 = complete answer ... -1 = no interest
Qrels = dict[str, dict[str, float]]  # query id -> doc id -> gain


# ------------------------------------------------------------------------------- file formats
QrelsBy = Literal["id", "position"]


def read_cranfield(path: Path, fields: Sequence[str] = (".T", ".W")) -> list[tuple[str, str]]:
    """``(.I id, text)`` records of a Cranfield file, the text joining the given fields' lines
    (the reader ``materialize --format cranfield`` uses)."""
    return [(r["id"], r["text"]) for _, r in formats.read_cranfield(path, tuple(fields))[1]]


def _is_cranfield(path: Path) -> bool:
    with path.open(encoding="utf-8") as handle:
        return handle.readline().startswith(".I ")


def _is_beir(path: Path) -> bool:
    """A JSON Lines file whose first record has BEIR's ``_id``."""
    if path.suffix != ".jsonl":
        return False
    with path.open(encoding="utf-8") as handle:
        first = next((line for line in handle if line.strip()), "")
    try:
        return isinstance(record := json.loads(first), dict) and "_id" in record
    except ValueError:
        return False


def _rows(path: Path, names: Sequence[str], headers: Sequence[str] = ()) -> list[tuple[int, list[str]]]:
    """``(line, values)`` of a TSV (an optional header: the first column named ``id``, ``names[0]``
    or one of ``headers``) or JSONL file."""
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
            if number == 1 and values[0].strip() in ("id", names[0], *headers):
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


def load_queries(path: str | Path, by: QrelsBy = "id") -> dict[str, str]:
    """Query id -> text, in file order: Cranfield ``cran.qry`` (``.I`` ids), BEIR ``queries.jsonl``
    (``_id``), a TSV (``query_id<TAB>text``) or JSONL (``{"query_id", "text"}``) file.

    ``by="position"`` numbers the queries 1, 2 ... in file order instead, as Cranfield's
    ``cranqrel`` does (its query 3 is the third query of ``cran.qry``, whose ``.I`` is 004).
    """
    path = existing_file(path, "queries")
    if _is_cranfield(path):
        pairs = read_cranfield(path, (".W",))
    elif _is_beir(path):
        pairs = [(str(r["id"]), r["text"]) for _, r in formats.read_beir(path)[1]]
    else:
        pairs = [(qid, text) for _, (qid, text) in _rows(path, ("query_id", "text"))]
    if by == "position":
        return {str(n): text for n, (_, text) in enumerate(pairs, start=1)}
    return dict(pairs)


def load_docs(path: str | Path) -> dict[str, str]:
    """Doc id -> text: Cranfield ``cran.all.1400`` and BEIR ``corpus.jsonl`` (title and text, read
    as ``materialize --format cranfield|beir`` reads them), or a TSV (``id<TAB>text``) / JSONL
    (``{"id", "text"}``) file such as the one a view was materialized from."""
    path = existing_file(path, "docs")
    if _is_cranfield(path):
        return dict(read_cranfield(path))
    if _is_beir(path):
        return {str(r["id"]): r["text"] for _, r in formats.read_beir(path)[1]}
    return {doc: text for _, (doc, text) in _rows(path, ("id", "text"))}


def load_qrels(path: str | Path) -> list[tuple[str, str, float]]:
    """``(query_id, doc_id, gain)``: ``.tsv``/``.jsonl`` files give the gain (BEIR's ``qrels/*.tsv``
    with their ``query-id corpus-id score`` header included); any other name is read as
    Cranfield's ``query doc grade`` lines with gain = 5 - grade for 1..4 and 0 for -1."""
    path = existing_file(path, "qrels")
    if path.suffix in (".tsv", ".jsonl"):
        rows = _rows(path, ("query_id", "doc_id", "gain"), headers=("query-id",))
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


def _id_range(ids: Sequence[str]) -> str:
    """``1..150``, ``001..223 with gaps`` or the first few ids: how a file numbers its queries."""
    unique = list(dict.fromkeys(ids))
    if unique and all(i.isdigit() for i in unique):
        low, high = min(unique, key=int), max(unique, key=int)
        gaps = len(set(map(int, unique))) < int(high) - int(low) + 1
        return f"{low}..{high}{' with gaps' if gaps else ''}"
    return ", ".join(unique[:3]) + (f" ... ({len(unique)} ids)" if len(unique) > 3 else "")


def check_query_numbering(
    judgments: Sequence[tuple[str, str, float]], queries_path: str | Path, by: QrelsBy, *, where: str
) -> None:
    """Refuse judgments numbered otherwise than ``by`` numbers the queries file.

    Refused: none of the judged query ids names a query, or some do not while the other
    numbering names them all (Cranfield's ``cranqrel`` read by ``.I`` id matches queries 100..150
    by accident, the wrong ones). The line says how each file numbers its queries and, when the
    other numbering fits, which option to use.
    """
    queries = load_queries(queries_path, by)
    judged = list(dict.fromkeys(q for q, _, _ in judgments))
    unknown = [q for q in judged if q not in queries]
    if not unknown:
        return
    other: QrelsBy = "position" if by == "id" else "id"
    fits_other = set(judged) <= set(load_queries(queries_path, other))
    if len(unknown) < len(judged) and not fits_other:
        return  # a few unknown queries: counted and dropped (or refused with strict) by check_qrels
    name, kind = Path(queries_path).name, "id" if by == "id" else "position"
    some = "match no query" if len(unknown) == len(judged) else f"{len(unknown)} of them match no query"
    message = f"{where}: qrels query ids {_id_range(judged)}: {some} {kind}; {name}'s {kind}s run {_id_range(list(queries))}"
    if fits_other:
        if other == "id":
            why = "the judgments name queries by their ids"
        else:
            why = "Cranfield's cranqrel numbers queries by position" if _is_cranfield(Path(queries_path)) else "the judgments number queries by position"
        message += f": {why}, use `qrels_by='{other}'`"
    raise SourceError(message)


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
