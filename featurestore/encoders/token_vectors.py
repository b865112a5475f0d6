"""Token-level vectors of a transformer encoder: one contextual vector per word.

:class:`TokenVectors` is what :class:`~featurestore.encoders.sentence.SentenceTransformerEncoder`
does at ``granularity="token"``: the words (given, or the tokenizer's own pre-tokenisation), their
pieces read in overlapping windows through the encoder's forward pass, and each word's vector
pooled back from its pieces (``subword``: the first piece's or the mean), with OOV flags.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from featurestore.encoders.base import TokenEncodeResult
from featurestore.encoders.spans import Span, align_tokens
from featurestore.encoders.windows import plan_windows, stitch
from featurestore.errors import EncoderError
from featurestore.vectors import l2_normalise

__all__ = ["TokenVectors"]


class TokenVectors:
    """``encode_tokens`` over an encoder's piece machinery: the class it is mixed into provides
    ``dim``, ``max_seq_length``, ``stride``, ``subword``, ``normalize``, ``_split`` (pieces and
    offsets of texts or word lists), ``_special_ids`` and ``_forward`` (hidden states of segments)."""

    dim: int
    max_seq_length: int
    stride: int
    subword: str
    normalize: bool

    def encode_tokens(self, texts: Sequence[str], tokens: Sequence[Sequence[str] | None] | None = None) -> TokenEncodeResult:
        """One contextual vector per word of each text.

        ``tokens[i]`` (e.g. a CoNLL sentence) fixes the words of ``texts[i]``, which must be those
        tokens joined by whitespace; without it the words are the tokenizer's own pre-tokenisation
        (BERT: whitespace, then each punctuation mark a word). Returns per text the words with
        their character spans in it, ``(n_words, dim) float32`` vectors and ``(n_words,) bool``
        OOV flags: True for a word that is all ``[UNK]`` or that the tokenizer drops entirely (a
        control character), the latter with a zero vector.
        """
        texts = list(texts)
        if tokens is not None and len(tokens) != len(texts):
            raise EncoderError(f"encode_tokens got {len(texts)} texts but {len(tokens)} token lists; pass one per text")
        given = list(tokens) if tokens is not None else [None] * len(texts)
        spans: list[list[Span]] = [[] for _ in texts]
        own = [i for i, t in enumerate(given) if t is None]
        for i, found in zip(own, self._pre_tokenize([texts[i] for i in own])):
            spans[i] = found
        for i, words in enumerate(given):
            if words is not None:
                spans[i] = align_tokens(texts[i], words, index=i)
        vectors, oov = self._word_vectors([[w for w, _, _ in found] for found in spans])
        return TokenEncodeResult(tokens=spans, vectors=vectors, oov=oov)

    def _pre_tokenize(self, texts: list[str]) -> list[list[Span]]:
        """The tokenizer's words with their spans in the original text (from its offset mapping)."""
        if not texts:
            return []
        out: list[list[Span]] = []
        for text, (_, word_ids, offsets) in zip(texts, self._split(texts)):
            words: dict[int, list[int]] = {}
            for word, (start, end) in zip(word_ids, offsets):
                span = words.setdefault(word, [start, end])
                span[1] = end
            out.append([(text[a:b], a, b) for a, b in words.values()])
        return out

    def _word_vectors(self, sentences: list[list[str]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Per sentence, ``(n_words, dim) float32`` vectors and ``(n_words,) bool`` OOV flags."""
        vectors = [np.zeros((len(words), self.dim), dtype=np.float32) for words in sentences]
        oov = [np.ones(len(words), dtype=bool) for words in sentences]
        todo = [i for i, words in enumerate(sentences) if words]
        if not todo:
            return vectors, oov
        split = self._split([sentences[i] for i in todo], words=True)
        prefix, suffix, unk_id = self._special_ids()
        size = self.max_seq_length - len(prefix) - len(suffix)
        pieces: list[tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]] = []
        segments: list[list[int]] = []
        for row, (row_ids, word_ids, _) in enumerate(split):
            ids = np.asarray(row_ids, dtype=np.int64)
            piece_word = np.asarray(word_ids, dtype=np.int64)
            windows = plan_windows(piece_word, size=size, overlap=self.stride) if len(ids) else []
            pieces.append((ids, piece_word, windows))
            segments += [prefix + ids[a:b].tolist() + suffix for a, b in windows]
        owner = [row for row, (_, _, windows) in enumerate(pieces) for _ in windows]
        outs: list[list[np.ndarray | None]] = [[None] * len(windows) for _, _, windows in pieces]
        left = [len(windows) for _, _, windows in pieces]
        first_window = np.cumsum([0] + left[:-1])
        for k, states in self._forward(segments, specials=(len(prefix), len(suffix))):
            row = owner[k]
            outs[row][k - first_window[row]] = states
            left[row] -= 1
            if left[row] == 0:  # all windows of the sentence are done: pool it now, free its states
                ids, piece_word, windows = pieces[row]
                done = outs[row]
                piece_vectors = done[0] if len(done) == 1 else stitch(done, windows, piece_word)  # type: ignore[arg-type]
                i = todo[row]
                vectors[i], oov[i] = self._pool(piece_vectors, ids, piece_word, len(sentences[i]), unk_id)
                outs[row] = []
        return vectors, oov

    def _pool(
        self, piece_vectors: np.ndarray, ids: np.ndarray, piece_word: np.ndarray, n_words: int, unk_id: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Pieces ``(n_pieces, dim)`` -> words ``(n_words, dim)`` (first piece or mean), plus OOV flags."""
        out = np.zeros((n_words, piece_vectors.shape[1]), dtype=np.float32)
        first = np.flatnonzero(np.r_[True, piece_word[1:] != piece_word[:-1]])
        has = piece_word[first]
        if self.subword == "first":
            out[has] = piece_vectors[first]
        else:
            counts = np.diff(np.r_[first, len(piece_word)])
            out[has] = np.add.reduceat(piece_vectors, first, axis=0) / counts[:, None]
        if self.normalize:
            l2_normalise(out)
        oov = np.ones(n_words, dtype=bool)
        oov[has] = False
        if unk_id is not None:
            oov[piece_word[ids == unk_id]] = True
        return out, oov
