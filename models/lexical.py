"""Lexical features of text views: the raw texts behind the stored vectors, TF-IDF baselines, and
the heads that read the words of a text beside its stored sentence vector.

The stored features of a text view are dense sentence vectors; what they blur (a phone number,
"£1000", "txt STOP") is exactly what word and character n-grams keep. Three text heads share
one logistic regression over scikit-learn blocks:

- ``logistic``: the dense features alone (the stored vectors, standardised: ``models.classify``);
- ``lexical``: word 1-2-gram and character 2-5-gram TF-IDF of the raw text;
- ``hybrid``: the standardised dense block beside both TF-IDF blocks, in one model.

A lexical or hybrid head is a ``Pipeline(ColumnTransformer, LogisticRegression)`` fitted on a
DataFrame of a ``text`` column and the dense columns (:func:`head_input`), so it is saved and
loaded by skops like every other head and carries what it reads (``feature_names_in_``). The
TF-IDF blocks are weighted 1 and the dense block ``DENSE_WEIGHT``: a weight ``w`` on a block is
the same as a ``C`` of ``C * w**2`` for that block alone, so the sparse blocks keep the baseline's
``C`` (10) and the dense block gets 0.1, ten times the dense head's regularisation. Beside the
n-grams the dense block works best as a smooth prior: on the SMS collection's folds a weight of
0.1 gave F1 0.970, 0.316 (the dense head's own ``C``) 0.949.

The baselines beside a text head are the two simple ones that are hard to beat on short texts:
word TF-IDF (1-2 grams) and character TF-IDF (2-5 grams within word boundaries), each with
logistic regression, fitted from scratch on the same folds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from featurestore.errors import SourceError
from featurestore.sources import TextSource
from featurestore.store import Store
from featurestore.training import TrainingSet

__all__ = [
    "BASELINES",
    "TEXT_COLUMN",
    "baseline_model",
    "head_input",
    "make_text_head",
    "raw_texts",
    "takes_text",
    "view_source",
]

TEXT_COLUMN = "text"
LEXICAL_C = 10.0  # TF-IDF features are sparse and many: weaker regularisation than the default fits them best
DENSE_WEIGHT = 0.1  # the dense block's weight in a hybrid head (its C: LEXICAL_C * DENSE_WEIGHT**2)
WORD_NGRAMS = (1, 2)
CHAR_NGRAMS = (2, 5)
# name in reports -> the TF-IDF block it fits
BASELINES: dict[str, str] = {"tfidf+logistic": "word", "char-tfidf+logistic": "char"}

TextHead = Literal["lexical", "hybrid"]


def _vectorizer(kind: str) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    if kind == "word":
        return TfidfVectorizer(ngram_range=WORD_NGRAMS, sublinear_tf=True)
    return TfidfVectorizer(analyzer="char_wb", ngram_range=CHAR_NGRAMS, sublinear_tf=True)


def _logistic(C: float, class_weight: str | None, binary: bool, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    # liblinear (a primal Newton solver here, deterministic) for two classes; it has no multiclass mode
    solver = "liblinear" if binary else "lbfgs"
    return LogisticRegression(C=C, class_weight=class_weight, solver=solver, max_iter=5000, random_state=seed)


def baseline_model(name: str, *, class_weight: str | None, binary: bool, seed: int = 0) -> Any:
    """An unfitted baseline of :data:`BASELINES`: TF-IDF + logistic regression on a 1-D array of texts."""
    from sklearn.pipeline import make_pipeline

    return make_pipeline(_vectorizer(BASELINES[name]), _logistic(LEXICAL_C, class_weight, binary, seed))


def make_text_head(kind: TextHead, dim: int, *, class_weight: str | None, binary: bool, seed: int = 0) -> Any:
    """An unfitted lexical or hybrid head over :func:`head_input` frames of ``dim`` dense columns."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    blocks = [("word", _vectorizer("word"), TEXT_COLUMN), ("char", _vectorizer("char"), TEXT_COLUMN)]
    weights = {"word": 1.0, "char": 1.0}
    if kind == "hybrid":
        blocks.insert(0, ("dense", StandardScaler(), dense_columns(dim)))
        weights["dense"] = DENSE_WEIGHT
    features = ColumnTransformer(blocks, transformer_weights=weights)  # the other columns are dropped
    return Pipeline([("features", features), ("logisticregression", _logistic(LEXICAL_C, class_weight, binary, seed))])


def dense_columns(dim: int) -> list[str]:
    return [f"dense_{i}" for i in range(dim)]


def head_input(X: np.ndarray, texts: Sequence[str]) -> Any:
    """What a lexical or hybrid head reads: a DataFrame of ``text`` and the ``(n, dim)`` dense features."""
    import pandas as pd

    if len(texts) != len(X):
        raise SourceError(f"{len(texts)} texts for {len(X)} feature rows; a text head needs the text of every row")
    frame = pd.DataFrame(np.asarray(X), columns=dense_columns(np.asarray(X).shape[1]))
    frame.insert(0, TEXT_COLUMN, [str(t) for t in texts])
    return frame


def takes_text(head: Any) -> bool:
    """Whether a fitted head reads the raw text beside its features (a lexical or hybrid head)."""
    return TEXT_COLUMN in list(getattr(head, "feature_names_in_", ()))


def view_source(ts: TrainingSet, *, store: Store | str | None) -> TextSource | None:
    """The text source the view was materialized from (its run record), or None when it is unknown or gone."""
    from featurestore.errors import StoreError

    table = ts.manifest.tables[0]
    try:
        source = Store.of(store).view_source(table.view, table.encoder_id)
    except StoreError:
        return None
    return source if isinstance(source, TextSource) else None


def raw_texts(ts: TrainingSet, source: TextSource | None) -> list[str] | None:
    """The raw text of each row: the view's kept ``text`` column, else read from ``source`` and
    checked against the stored content hashes (a head must see the texts that were encoded)."""
    if TEXT_COLUMN in ts.columns.columns:
        return ts.columns[TEXT_COLUMN].astype(str).tolist()
    if source is None:
        return None
    by_id: dict[str, tuple[str, str]] = {}
    for batch in source.batches():
        by_id.update(zip(batch.entity_id, zip(batch.content, batch.content_hash)))
    texts = []
    for entity, digest in zip(ts.ids.tolist(), ts.columns["content_hash"].tolist()):
        text, have = by_id.get(entity, (None, None))
        if have != digest:
            state = "is not in" if text is None else "has another text in"
            raise SourceError(f"entity {entity!r} {state} {source.path} than the one stored; pass the source the view was materialized from")
        texts.append(text)
    return texts
