"""Named-entity recognition heads on stored token features (CoNLL-2003, BIO tags).

A token view (``materialize ... --granularity token`` of a CoNLL file) holds one row per word
with its sentence's ``entity_id``, ``token_index`` and the word's ``ner_tags``. The heads here
read those rows straight from the store and rebuild each sentence in word order, because a
tagger needs the sequence, not independent rows.

The heads (:mod:`models.tagging`) take a sequence of sentences: per-word logistic regression
over a window of vectors, or a torch MLP / BiLSTM (+ CRF) tagger. The default, ``bilstm-crf``,
is the best the project measured on CoNLL-2003 (a BiLSTM with a CRF layer over the mean of
MiniLM's last four layers, the default token vectors); ``mlp`` is the quick one.

Beside the head, every run scores a dictionary baseline on the same test sentences: each
training word's most frequent tag, unknown words ``O``, repaired to valid BIO.

Evaluation is entity-level with seqeval in its default (conlleval-compatible) mode, the number
CoNLL-2003 results are quoted in; the strict IOB2 F1 is reported beside it.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator

from featurestore.errors import FeatureStoreError, InvalidArgumentError, NotFoundError, StoreError
from featurestore.manifest import TrainingManifest, encoder_entry, make_manifest
from featurestore.progress import ProgressFn, Steps
from featurestore.store import FeatureTable, Store
from models.base import LoadedModel, TrainResult
from models.tagging import TokenLogisticRegression, TorchTokenClassifier

TASK = "ner"
ENTITY_TYPES = ("PER", "LOC", "ORG", "MISC")
TOKEN_COLUMNS = ("token_index", "ner_tags")
# head name -> the TorchTokenClassifier parameters it stands for; "logreg" is TokenLogisticRegression
# (the names `featurestore train ner --head` lists)
RECIPES: dict[str, dict[str, Any]] = {
    "bilstm-crf": {"arch": "bilstm", "crf": True, "hidden": 128},
    "bilstm": {"arch": "bilstm", "crf": False, "hidden": 128},
    "mlp": {"arch": "mlp", "context": 1},
}
HEADS = (*RECIPES, "logreg")
DEFAULT_HEAD = "bilstm-crf"
Head = Literal["bilstm-crf", "bilstm", "mlp", "logreg"]


# ---------------------------------------------------------------- data
@dataclass
class Sentences:
    """A token view's sentences in word order: ids, per-sentence vectors and BIO tags."""

    ids: list[str]
    vectors: list[np.ndarray]
    tags: list[list[str]]
    words: list[list[str]]

    def take(self, index: Sequence[int]) -> Sentences:
        return Sentences(*([part[i] for i in index] for part in (self.ids, self.vectors, self.tags, self.words)))

    @property
    def n_tokens(self) -> int:
        return sum(len(t) for t in self.tags)


def token_table(view: str, encoder: str | None = None, *, store: Store) -> FeatureTable:
    """The view's table, refused unless it holds token rows with their NER tags."""
    table = store.resolve_table(view, encoder)
    if table.meta.granularity != "token":
        raise FeatureStoreError(
            f"view {view!r} has granularity {table.meta.granularity!r}; NER trains on token rows: "
            "materialize a CoNLL file with `granularity='token'`"
        )
    names = [field.name for field in table.delta().schema().fields]
    missing = [c for c in TOKEN_COLUMNS if c not in names]
    if missing:
        raise FeatureStoreError(
            f"view {view!r} has no {', '.join(missing)} column; it has: {', '.join(names)}. "
            "Materialize a CoNLL file with `keep='ner_tags'`"
        )
    return table


def read_sentences(table: FeatureTable, as_of: int | None = None) -> tuple[Sentences, int]:
    """Sentences of the table's latest state (or ``as_of`` a version), sorted by entity id, and the table version read."""
    frame = table.latest([*TOKEN_COLUMNS, "token"], as_of=as_of)
    ids = frame.ids.astype(str)
    order = np.lexsort((frame.columns.column("token_index").to_numpy(), ids))
    ids = ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    bounds = list(zip(starts, np.r_[starts[1:], len(ids)]))
    vectors = frame.vectors[order]
    tags = np.asarray(frame.columns.column("ner_tags").to_pylist(), dtype=object)[order]
    words = np.asarray(frame.columns.column("token").to_pylist(), dtype=object)[order]
    sentences = Sentences(
        ids=[str(ids[a]) for a, _ in bounds],
        vectors=[vectors[a:b] for a, b in bounds],
        tags=[tags[a:b].tolist() for a, b in bounds],
        words=[words[a:b].tolist() for a, b in bounds],
    )
    return sentences, frame.version


def document_split(ids: Sequence[str], test_size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sentence indices of a seeded train/test split that keeps each document on one side.

    Sentences of one news story repeat its names; splitting within a document would score
    memorised names. A CoNLL sentence id is ``DDDDD-SSSS`` (document, position).
    """
    from sklearn.model_selection import GroupShuffleSplit

    groups = [i.rsplit("-", 1)[0] for i in ids]
    if len(set(groups)) < 2:
        raise FeatureStoreError(f"a document-grouped split needs sentences of at least 2 documents; got {len(set(groups))}")
    splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
    train, test = next(splitter.split(np.zeros(len(ids)), groups=groups))
    return np.sort(train), np.sort(test)


# ---------------------------------------------------------------- metrics
def entity_report(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level precision/recall/F1 (seqeval default mode) overall and per type, plus strict F1."""
    from seqeval.metrics import classification_report, f1_score
    from seqeval.scheme import IOB2

    true, pred = [list(s) for s in y_true], [list(s) for s in y_pred]
    per_type = classification_report(true, pred, output_dict=True, zero_division=0)
    overall = per_type.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        per_type.pop(key, None)
    return {
        "mode": "seqeval default (conlleval)",
        "precision": float(overall["precision"]),
        "recall": float(overall["recall"]),
        "f1": float(overall["f1-score"]),
        "f1_strict": float(f1_score(true, pred, mode="strict", scheme=IOB2, zero_division=0)),
        "per_type": {t: {k.replace("-score", ""): float(v) for k, v in row.items()} for t, row in sorted(per_type.items())},
    }


# ---------------------------------------------------------------- baseline
def bio_repair(tags: Sequence[str]) -> list[str]:
    """``I-X`` that does not continue an ``X`` entity becomes ``B-X``: valid BIO, same entity types."""
    out: list[str] = []
    for tag in tags:
        if tag.startswith("I-") and (not out or out[-1][2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
    return out


def dictionary_tags(train_words: Sequence[Sequence[str]], train_tags: Sequence[Sequence[str]], words: Sequence[Sequence[str]]) -> list[list[str]]:
    """The majority-tag baseline: each word gets its most frequent training tag (``O`` if unseen), BIO-repaired.

    Ties go to the tag seen first in the training sentences (``Counter.most_common`` keeps
    insertion order), so the baseline is deterministic.
    """
    counts: dict[str, Counter[str]] = {}
    for sentence, tags in zip(train_words, train_tags):
        for word, tag in zip(sentence, tags):
            counts.setdefault(word, Counter())[tag] += 1
    best = {word: c.most_common(1)[0][0] for word, c in counts.items()}
    return [bio_repair([best.get(word, "O") for word in sentence]) for sentence in words]


# ---------------------------------------------------------------- task API
def make_head(head: str, options: dict[str, Any], seed: int = 0) -> BaseEstimator:
    """The head named ``head`` (a :data:`RECIPES` name or ``logreg``) with ``options`` over its recipe.

    Unknown options are refused. ``seed`` seeds the head too when it has randomness (the torch
    heads), so one seed given to :func:`train` fixes both the split and the weights.
    """
    if head not in HEADS:
        raise InvalidArgumentError(f"head must be one of {', '.join(map(repr, HEADS))}. Got {head!r} instead.")
    cls = TorchTokenClassifier if head in RECIPES else TokenLogisticRegression
    known = cls().get_params()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidArgumentError(f"{', '.join(unknown)}: not options of the {head} NER head; it takes: {', '.join(known)}")
    seeded = {"random_state": seed} if "random_state" in known else {}
    return cls(**seeded, **{**RECIPES.get(head, {}), **options})


def train(
    view: str,
    encoder: str | None = None,
    *,
    store: Store | str | None = None,
    eval_view: str | None = None,
    head: Head = DEFAULT_HEAD,
    test_size: float = 0.2,
    seed: int = 0,
    rebuild: TrainingManifest | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> TrainResult:
    """Fit an NER head on ``view``'s token rows and score it on ``eval_view`` (same encoder).

    Without ``eval_view`` the view is split by document (``test_size``, seeded). ``head`` names a
    recipe (:data:`RECIPES`; default the BiLSTM-CRF) or ``logreg``; ``options`` are the head's
    parameters over it (see :class:`TorchTokenClassifier`, :class:`TokenLogisticRegression`).
    The dictionary baseline (:func:`dictionary_tags`) is scored on the same test sentences:
    ``baseline_f1`` in the metrics, its full report under ``baselines`` in the report.
    ``progress`` ticks three steps: the sentences read, the head fitted, both scored.
    """
    store = Store.of(store)
    if rebuild is not None:  # the sentences and split the manifest describes, at its table versions
        view, encoder = rebuild.view, rebuild.tables[0].encoder_id
        eval_view, test_size, seed = rebuild.arguments.get("eval_view"), rebuild.arguments.get("test_size", test_size), rebuild.arguments.get("seed", seed)
    table = token_table(view, encoder, store=store)
    model = make_head(head, options, seed)
    steps = Steps(progress, 3)
    fit_set, test_set, tables = _sentences(store, table, eval_view, test_size, seed, rebuild)
    steps.tick()
    manifest = make_manifest(
        tables,
        arguments={"view": view, "encoder": table.meta.encoder_id, "eval_view": eval_view, "split": None if eval_view else "document",
                   "test_size": test_size, "seed": seed},
        content_sha256=_content_hash(fit_set, test_set),
        rows=len(fit_set.ids),
        kind="sentences",
        details={"train_sentences": len(fit_set.ids), "train_tokens": fit_set.n_tokens, "test_sentences": len(test_set.ids)},
    )
    if rebuild is not None and manifest.content_sha256 != rebuild.content_sha256:
        raise StoreError(
            f"the training sentences of view {view!r} do not rebuild identically (content_sha256 differs); "
            "its table history changed since the manifest was written"
        )
    started = time.perf_counter()
    model.fit(fit_set.vectors, fit_set.tags)
    fit_seconds = time.perf_counter() - started
    steps.tick()
    report = entity_report(test_set.tags, model.predict(test_set.vectors))
    report["timings"] = {"fit_seconds": round(fit_seconds, 2)}
    baseline = entity_report(test_set.tags, dictionary_tags(fit_set.words, fit_set.tags, test_set.words))
    report["baselines"] = {"dictionary": {"description": "each training word's most frequent tag (O if unseen), BIO-repaired", **baseline}}
    metrics = {"f1": report["f1"], "precision": report["precision"], "recall": report["recall"], "f1_strict": report["f1_strict"]}
    metrics.update({f"f1_{t}": report["per_type"][t]["f1"] for t in ENTITY_TYPES if t in report["per_type"]})
    metrics["baseline_f1"] = baseline["f1"]
    steps.tick()
    params = {"eval_view": eval_view, "head": head, "test_size": test_size, "seed": seed, **model.get_params()}
    return TrainResult(TASK, model, metrics, report, manifest, [encoder_entry(table)], params)


def _sentences(
    store: Store, table: FeatureTable, eval_view: str | None, test_size: float, seed: int, rebuild: TrainingManifest | None
) -> tuple[Sentences, Sentences, list[tuple[FeatureTable, int]]]:
    """The sentences to fit and to test on, and each table read with its version (pinned to
    ``rebuild``'s versions when given): the eval view's, else a seeded document split of the view's."""
    pins = {(t.view, t.encoder_id): t.version for t in rebuild.tables} if rebuild is not None else {}
    data, version = read_sentences(table, as_of=pins.get((table.meta.view, table.meta.encoder_id)))
    if eval_view is not None:
        eval_table = token_table(eval_view, table.meta.encoder_id, store=store)
        test_set, eval_version = read_sentences(eval_table, as_of=pins.get((eval_view, table.meta.encoder_id)))
        return data, test_set, [(table, version), (eval_table, eval_version)]
    fit_rows, test_rows = document_split(data.ids, test_size, seed)
    return data.take(fit_rows), data.take(test_rows), [(table, version)]


def training_sentences(model: LoadedModel, *, store: Store) -> Sentences:
    """The sentences ``model`` was fitted on, read back through its training manifest: the view at
    the recorded table version, less the document split's test side when it had no eval view."""
    training = model.training
    table = token_table(training.view, training.tables[0].encoder_id, store=store)
    data, _ = read_sentences(table, as_of=training.tables[0].version)
    if training.arguments.get("eval_view") is None:
        fit_rows, _ = document_split(data.ids, float(training.arguments["test_size"]), int(training.arguments["seed"]))
        data = data.take(fit_rows)
    return data


def evaluate_view(model: LoadedModel, view: str, *, store: Store | str | None = None) -> dict[str, Any]:
    """Entity F1 of ``model`` on the token rows of ``view`` (new CoNLL data materialized with
    ``--granularity token`` and the head's own encoder), beside the dictionary baseline fitted on
    the head's own training sentences and scored on the same sentences.

    Returns ``input`` (the view and version read), ``content_hash`` (of its sentence ids and
    tags), ``rows`` (sentences), ``tokens``, ``metrics`` and ``baselines``.
    """
    store = Store.of(store)
    encoder_id = model.manifest["encoders"][0]["encoder_id"]
    try:
        table = token_table(view, encoder_id, store=store)
    except NotFoundError:
        store.resolve_table(view)  # the view itself is missing: that message
        raise NotFoundError(
            f"view {view!r} has no table for model {model.name}'s encoder {encoder_id}; materialize the new CoNLL file "
            "with the head's encoder and `granularity='token'` (and the same `layers`)"
        ) from None
    data, version = read_sentences(table)
    if not data.ids:
        raise FeatureStoreError(f"view {view!r} holds no sentences to score")
    report = entity_report(data.tags, model.head.predict(data.vectors))
    fit = training_sentences(model, store=store)
    baseline = entity_report(data.tags, dictionary_tags(fit.words, fit.tags, data.words))
    metrics = {k: report[k] for k in ("f1", "precision", "recall", "f1_strict")}
    metrics.update({f"f1_{t}": report["per_type"][t]["f1"] for t in ENTITY_TYPES if t in report["per_type"]})
    scored = {k: baseline[k] for k in ("f1", "precision", "recall", "f1_strict")}
    scored.update({f"f1_{t}": baseline["per_type"][t]["f1"] for t in ENTITY_TYPES if t in baseline["per_type"]})
    return {
        "input": f"view {view} (table version {version})",
        "content_hash": _content_hash(data),
        "rows": len(data.ids),
        "tokens": data.n_tokens,
        "metrics": metrics,
        "baselines": {"dictionary": {"name": "dictionary", "description": "each training word's most frequent tag (O if unseen), BIO-repaired", **scored}},
    }


def _content_hash(*parts: Sentences) -> str:
    """sha256 over sentence ids and tags on each side: equal hashes mean the same labelled split."""
    digest = hashlib.sha256()
    for side in parts:
        for sid, tags in zip(side.ids, side.tags):
            digest.update(f"{sid}\t{' '.join(tags)}\n".encode())
        digest.update(b"--\n")
    return digest.hexdigest()


def predict(model: LoadedModel, inputs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entities in raw texts, with the model's own encoder's words and character spans.

    Per input: ``id``, ``entities`` (``text, type, start, end, score``: ``text == input[start:end]``,
    ``score`` the mean probability of the entity's predicted tags), ``label`` (the number of
    entities found) and ``score`` (the mean probability of every word's predicted tag: how sure
    the tagger is of the whole sentence; 0.0 for a text without words).
    """
    texts = []
    for position, item in enumerate(inputs):
        if not isinstance(item.get("text"), str):
            raise FeatureStoreError(f"input {item.get('id', position)!r} has no 'text'; NER takes {{'id', 'text'}} per input")
        texts.append(item["text"])
    from models.registry import model_encoders

    encoded = model_encoders(model)[0].encode_tokens(texts)
    head = model.head
    probas = head.predict_proba(encoded.vectors)
    tags = head.predict(encoded.vectors)
    return [
        _entities(item.get("id", position), text, spans, sentence_tags, proba, head.classes_)
        for position, (item, text, spans, sentence_tags, proba) in enumerate(zip(inputs, texts, encoded.tokens, tags, probas))
    ]


def _entities(
    item_id: Any, text: str, spans: list[tuple[str, int, int]], tags: list[str], proba: np.ndarray, classes: np.ndarray
) -> dict[str, Any]:
    """One prediction: BIO tags -> entities (seqeval's chunking, as scored) with char spans."""
    from seqeval.metrics.sequence_labeling import get_entities

    column = {c: i for i, c in enumerate(classes)}
    tag_proba = proba[np.arange(len(tags)), [column[t] for t in tags]] if tags else np.zeros(0)
    entities = [
        {
            "text": text[spans[first][1] : spans[last][2]],
            "type": kind,
            "start": spans[first][1],
            "end": spans[last][2],
            "score": round(float(tag_proba[first : last + 1].mean()), 4),
        }
        for kind, first, last in get_entities(tags)
    ]
    score = round(float(tag_proba.mean()), 4) if len(tag_proba) else 0.0
    return {"id": item_id, "label": len(entities), "score": score, "entities": entities}
