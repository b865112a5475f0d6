"""Word-vector encoders (``word2vec``, ``w2v:/path``): gensim KeyedVectors, pooled per text or per word.

Reads word2vec binary (``.bin``), word2vec text (a ``count dim`` header), GloVe text (no
header) and gensim's native format (``.kv``/``.model``, memory-mapped). A text's vector is the
mean of its in-vocabulary word vectors, optionally SIF-weighted (Arora et al. 2017), then
L2-normalised. Out-of-vocabulary words are counted; a text with no known word gets the zero
vector and is flagged, never NaN. With ``granularity="token"`` each word keeps its own vector
(``encode_tokens``), an unknown word the zero vector and an OOV flag.
"""

from __future__ import annotations

import html
import re
import threading
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from featurestore.encoders.base import BaseEncoder, EncodeResult, TextGranularity, TokenEncodeResult, file_digest
from featurestore.encoders.spans import Span, align_tokens
from featurestore.errors import EncoderError, InvalidArgumentError
from featurestore.extras import require
from featurestore.vectors import l2_normalise

# The tokenizer the default vectors were trained with: letter/digit runs, in-word apostrophes
# kept, numbers keep inner "." and ",", other punctuation dropped.
_TOKEN = re.compile(r"\d+(?:[.,]\d+)+|[^\W_]+(?:'[^\W_]+)*")
_APOSTROPHES = str.maketrans({"\u2019": "'", "`": "'"})
# html.unescape's own pattern (html._charref): each match is replaced on its own, so unescaping
# match by match gives html.unescape's result while keeping track of where each character came from.
_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")
VectorFormat = Literal["word2vec-binary", "word2vec-text", "glove", "gensim"]

_VECTORS: dict[str, Any] = {}
_LOCK = threading.Lock()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, the way the default word2vec vectors were trained."""
    return _TOKEN.findall(_normalize(text))


def _normalize(text: str) -> str:
    """What the tokenizer matches and the vocabulary is looked up with: unescaped, plain apostrophes, lower case."""
    return html.unescape(text).translate(_APOSTROPHES).lower()


def tokenize_spans(text: str) -> list[tuple[str, int, int]]:
    """``tokenize(text)`` with each token's ``[start, end)`` in the original ``text``.

    Unescaping (``&amp;`` -> ``&``) and lower-casing (``İ`` -> ``i̇``) can change lengths, so
    every character of the normalised text keeps the span of the original characters it came
    from; a token's span runs from its first character's start to its last character's end.
    """
    normalized = _normalize(text)
    if len(normalized) == len(text) and "&" not in text:  # nothing moved
        return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(normalized)]
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    pieces = [(m.start(), m.end(), html.unescape(m.group())) for m in _CHARREF.finditer(text)]
    for a, b, unescaped in [*pieces, (len(text), len(text), "")]:
        for k in range(pos, a):  # plain characters map to themselves
            n = len(text[k].lower())
            starts += [k] * n
            ends += [k + 1] * n
        n = len(unescaped.translate(_APOSTROPHES).lower())
        starts += [a] * n
        ends += [b] * n
        pos = b
    if len(starts) != len(normalized):  # lower-casing that depends on context (never seen): no spans to give
        raise EncoderError(f"cannot map the tokens of {text[:60]!r} back to it; pass the tokens with the text")
    return [(m.group(), starts[m.start()], ends[m.end() - 1]) for m in _TOKEN.finditer(normalized)]


def detect_format(path: Path) -> VectorFormat:
    """Tell the file format from its suffix and, for text files, its first line."""
    suffix = path.suffix.lower()
    if suffix == ".bin":
        return "word2vec-binary"
    if suffix in {".kv", ".model", ".wv"}:
        return "gensim"
    with open(path, "rb") as fh:
        first = fh.readline(1 << 16).split()
    if len(first) == 2 and all(part.isdigit() for part in first):
        return "word2vec-text"
    if len(first) > 2:
        return "glove"
    raise EncoderError(
        f"cannot tell the format of {path}: expected word2vec binary (.bin), word2vec text "
        "(header 'count dim'), GloVe text (word then numbers) or gensim native (.kv)"
    )


# What a gensim 4 KeyedVectors file (a pickle) may build: the class and numpy arrays, nothing that
# runs code. The numpy 1 spelling (numpy.core) is what files written before numpy 2 name.
_NATIVE_GLOBALS = frozenset({
    ("gensim.models.keyedvectors", "KeyedVectors"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
})
_ATTRIBUTE = re.compile(r"^[A-Za-z_]\w*$")


def _load_native(path: Path, kv_cls: Any) -> Any:
    """A gensim native file, memory-mapped, without letting its pickle call anything.

    ``KeyedVectors.load`` is ``pickle.load``: a ``.kv`` file, or a ``w2v:`` ref that a model
    manifest or a table's metadata names, could run any code. This reads the pickle with an
    unpickler that builds only ``_NATIVE_GLOBALS``, then lets gensim map the arrays it saved
    beside it (``np.load``, no pickles); a file that needs more is refused.
    """
    import pickle

    from gensim.utils import SaveLoad

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if (module, name) not in _NATIVE_GLOBALS:
                raise EncoderError(f"{path} asks to build {module}.{name}, which a gensim KeyedVectors file does not hold; it is not loaded")
            return super().find_class(module, name)

    try:
        with open(path, "rb") as fh:
            kv = Unpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise EncoderError(f"cannot read word vectors from {path} as gensim native: {exc}") from None
    if type(kv) is not kv_cls:
        raise EncoderError(f"{path} holds a {type(kv).__name__}, not gensim KeyedVectors; it is not loaded")
    arrays = getattr(kv, "__numpys", [])
    if getattr(kv, "__scipys", []) or getattr(kv, "__recursive_saveloads", []) or not all(isinstance(a, str) and _ATTRIBUTE.match(a) for a in arrays):
        raise EncoderError(f"{path} names extra files that a gensim KeyedVectors file does not have; it is not loaded")
    compress, subname = SaveLoad._adapt_by_suffix(str(path))
    kv._load_specials(str(path), None if compress else "r", compress, subname)
    return kv


class Word2VecEncoder(BaseEncoder):
    """Pooled word vectors for texts, or each word's own vector.

    Parameters
    ----------
    path : a vectors file (word2vec binary/text, GloVe text, gensim native).
    name : the registry name, recorded in the spec.
    weighting : ``mean`` (plain average) or ``sif`` (smooth inverse frequency, ``a / (a + p(w))``,
        with p(w) from the file's counts when it has them, else Zipf's law on the word's rank).
        Sentence granularity only.
    sif_a : the SIF smoothing constant.
    normalize : L2-normalise each vector (the zero vector stays zero). Default: True for text
        vectors, False for word vectors (kept as trained).
    granularity : ``sentence`` (``encode``, one vector per text) or ``token`` (``encode_tokens``).
    """

    modality = "text"
    metric = "cosine"

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "w2v",
        weighting: Literal["mean", "sif"] = "mean",
        sif_a: float = 1e-3,
        normalize: bool | None = None,
        granularity: TextGranularity = "sentence",
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EncoderError(f"word vectors not found: {self.path}; pass an existing file with w2v:/path/to/vectors")
        if weighting not in ("mean", "sif"):
            raise InvalidArgumentError(f"weighting must be 'mean' or 'sif'. Got {weighting!r} instead.")
        if granularity not in ("sentence", "token"):
            raise InvalidArgumentError(f"`granularity` must be 'sentence' or 'token'. Got {granularity!r} instead.")
        if granularity == "token" and weighting != "mean":
            raise EncoderError(
                f"weighting={weighting!r} pools the words of a text; with granularity='token' each word keeps "
                "its own vector, so leave weighting out"
            )
        self.name = name
        self.weighting = weighting
        self.sif_a = sif_a
        self.granularity = granularity
        self.normalize = normalize if normalize is not None else granularity == "sentence"
        self.format = detect_format(self.path)
        self._dim: int | None = None

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = self._read_dim()
        return self._dim

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "kind": self.name,
            "family": "word-vectors",
            "format": self.format,
            "weights": file_digest(self.path),
            "tokenizer": "w2v-regex-v1",
            "pooling": self.weighting,
            "normalize": self.normalize,
            "dim": self.dim,
        }
        if self.weighting == "sif":
            spec["sif_a"] = self.sif_a
        if self.granularity == "token":  # no pooling: each word keeps its vector
            del spec["pooling"]
            spec["granularity"] = "token"
        return spec

    def vectors(self):
        """The gensim KeyedVectors, loaded once per process (native files memory-mapped)."""
        key = str(self.path.resolve())
        with _LOCK:
            if key not in _VECTORS:
                _VECTORS[key] = self._load()
            return _VECTORS[key]

    def _load(self):
        models = require("gensim.models", "text")
        kv_cls = models.KeyedVectors
        try:
            if self.format == "gensim":
                return _load_native(self.path, kv_cls)
            return kv_cls.load_word2vec_format(
                str(self.path),
                binary=self.format == "word2vec-binary",
                no_header=self.format == "glove",
            )
        except (ValueError, EOFError, UnicodeDecodeError, OSError) as exc:
            raise EncoderError(f"cannot read word vectors from {self.path} as {self.format}: {exc}") from exc

    def _read_dim(self) -> int:
        if self.format in ("word2vec-binary", "word2vec-text"):
            with open(self.path, "rb") as fh:
                return int(fh.readline().split()[1])
        if self.format == "glove":
            with open(self.path, "rb") as fh:
                return len(fh.readline().split()) - 1
        return int(self.vectors().vector_size)

    def _weights(self) -> np.ndarray:
        """Per-word weights ``(vocab,) float32``: ones for ``mean``, SIF for ``sif``."""
        kv = self.vectors()
        cached = getattr(kv, "_featurestore_sif", None)
        if self.weighting == "mean":
            return np.ones(len(kv.index_to_key), dtype=np.float32)
        if cached is not None and cached[0] == self.sif_a:
            return cached[1]
        counts = np.array([kv.get_vecattr(w, "count") if kv.has_index_for(w) else 0 for w in kv.index_to_key], dtype=np.float64)
        if counts.max() <= 0 or np.all(counts == counts[0]):
            counts = 1.0 / np.arange(1, len(counts) + 1)  # Zipf: p(rank) ~ 1/rank
        p = counts / counts.sum()
        weights = (self.sif_a / (self.sif_a + p)).astype(np.float32)
        kv._featurestore_sif = (self.sif_a, weights)
        return weights

    def load(self) -> None:
        self.vectors()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        return self.encode_with_stats(batch).vectors

    def encode_with_stats(self, batch: Sequence[str]) -> EncodeResult:
        if self.granularity == "token":
            raise EncoderError(
                f"{self.name} was built with granularity='token' (one vector per word); call encode_tokens, "
                "or build it with granularity='sentence' for one vector per text"
            )
        kv = self.vectors()
        index = kv.key_to_index
        table = kv.vectors
        weights = self._weights()
        n = len(batch)
        out = np.zeros((n, self.dim), dtype=np.float32)
        n_tokens = np.zeros(n, dtype=np.int64)
        n_oov = np.zeros(n, dtype=np.int64)
        for i, text in enumerate(batch):
            tokens = tokenize(text)
            ids = [index[t] for t in tokens if t in index]
            n_tokens[i] = len(tokens)
            n_oov[i] = len(tokens) - len(ids)
            if ids:
                w = weights[ids]
                out[i] = (w[:, None] * table[ids]).sum(axis=0) / w.sum()
        zero = ~out.any(axis=1)
        if self.normalize:
            l2_normalise(out)
        return EncodeResult(out, n_tokens, n_oov, zero)

    def encode_tokens(self, texts: Sequence[str], tokens: Sequence[Sequence[str] | None] | None = None) -> TokenEncodeResult:
        """Each word's own vector.

        ``tokens[i]`` (e.g. a CoNLL sentence) fixes the words of ``texts[i]``, which must be those
        tokens joined by whitespace; without it the words are :func:`tokenize`'s, with spans in the
        original text. A word is looked up whole after the tokenizer's normalisation (unescaped,
        plain apostrophes, lower case); an unknown word (``"U.S."``, ``","`` from a given token
        list) gets the zero vector and an OOV flag. Per text: ``(n_words, dim) float32`` vectors
        and ``(n_words,) bool`` flags.
        """
        texts = list(texts)
        if tokens is not None and len(tokens) != len(texts):
            raise EncoderError(f"encode_tokens got {len(texts)} texts but {len(tokens)} token lists; pass one per text")
        given = list(tokens) if tokens is not None else [None] * len(texts)
        kv = self.vectors()
        index = kv.key_to_index
        spans: list[list[Span]] = []
        vectors: list[np.ndarray] = []
        oov: list[np.ndarray] = []
        for i, (text, words) in enumerate(zip(texts, given)):
            if words is None:
                found = tokenize_spans(text)
                keys = [key for key, _, _ in found]
                spans.append([(text[a:b], a, b) for _, a, b in found])
            else:
                spans.append(align_tokens(text, words, index=i))
                keys = [_normalize(w) for w in words]
            ids = np.array([index.get(key, -1) for key in keys], dtype=np.int64)
            known = ids >= 0
            out = np.zeros((len(keys), self.dim), dtype=np.float32)
            out[known] = kv.vectors[ids[known]]
            if self.normalize:
                l2_normalise(out)
            vectors.append(out)
            oov.append(~known)
        return TokenEncodeResult(tokens=spans, vectors=vectors, oov=oov)
