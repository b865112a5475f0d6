"""Token-level encoding (one vector per word): minilm and word2vec on real CoNLL-2003 sentences."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import settings
from featurestore.encoders import TokenEncodeResult, get_encoder
from featurestore.encoders.windows import assign_pieces, plan_windows
from featurestore.encoders.word2vec import tokenize, tokenize_spans
from featurestore.errors import EncoderError, InvalidArgumentError
from featurestore.sources import ConllSource
from tests.conftest import need

TESTA = settings.data_dir() / "ner" / "conll2003" / "eng.testa"
ODD = "Hello  wörld\x07 ok 日本 İSTANBUL U.S. isn\u2019t AT&amp;T don&#39;t €§ naïve"


@pytest.fixture(scope="module")
def conll() -> list[list[str]]:
    need(TESTA)
    return [tokens for batch in ConllSource(str(TESTA)).batches() for tokens in batch.tokens]


@pytest.fixture(scope="module")
def minilm_tokens(minilm):
    return get_encoder("minilm", device="cpu", granularity="token")


@pytest.fixture(scope="module")
def word2vec_tokens(word2vec):
    return get_encoder("word2vec", granularity="token")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def check_spans(texts, result: TokenEncodeResult, dim: int) -> None:
    assert len(result.tokens) == len(result.vectors) == len(result.oov) == len(texts)
    for text, spans, vectors, oov in zip(texts, result.tokens, result.vectors, result.oov):
        assert vectors.shape == (len(spans), dim) and vectors.dtype == np.float32
        assert oov.shape == (len(spans),) and oov.dtype == bool
        assert all(text[a:b] == token for token, a, b in spans)
        assert [a for _, a, _ in spans] == sorted(a for _, a, _ in spans)


# ---- spec and options --------------------------------------------------------------------------


def test_sentence_encoder_ids_are_unchanged_and_token_ids_differ(minilm, word2vec, minilm_tokens, word2vec_tokens):
    # pinned: adding the token level must not re-key any stored sentence table
    assert minilm.encoder_id == "minilm-c611fe5c81" and "granularity" not in minilm.spec
    assert word2vec.encoder_id == "word2vec-6c3d00d859" and "granularity" not in word2vec.spec
    assert minilm.granularity == word2vec.granularity == "sentence"
    spec = minilm_tokens.spec
    assert minilm_tokens.granularity == "token"
    assert {k: spec[k] for k in ("granularity", "layers", "subword", "stride", "normalize")} == {
        "granularity": "token", "layers": "last4", "subword": "first", "stride": 127, "normalize": False,  # last4: the default NER recipe's
    }
    assert "pooling" not in spec and minilm_tokens.encoder_id != minilm.encoder_id
    assert word2vec_tokens.spec["granularity"] == "token" and word2vec_tokens.encoder_id != word2vec.encoder_id
    options = ({}, {"layers": "last"}, {"subword": "mean"}, {"stride": 64})
    ids = {get_encoder("minilm", granularity="token", **o).encoder_id for o in options}
    assert len(ids) == 4


def test_bad_token_options_are_refused():
    with pytest.raises(InvalidArgumentError, match="^`granularity` must be 'sentence' or 'token'. Got 'word' instead"):
        get_encoder("minilm", granularity="word")
    with pytest.raises(EncoderError, match=r"^`layers='last4'` only apply to `granularity='token'`"):
        get_encoder("minilm", layers="last4")
    with pytest.raises(InvalidArgumentError, match="^`subword` must be one of 'first', 'mean'. Got 'last' instead"):
        get_encoder("minilm", granularity="token", subword="last")
    with pytest.raises(InvalidArgumentError, match="stride must be an int from 0 to 127"):
        get_encoder("minilm", granularity="token", stride=200)
    with pytest.raises(EncoderError, match="weighting='sif' pools the words"):
        get_encoder("word2vec", granularity="token", weighting="sif")


def test_token_encoders_refuse_sentence_encoding(minilm_tokens, word2vec_tokens):
    for enc in (minilm_tokens, word2vec_tokens):
        with pytest.raises(EncoderError, match="call encode_tokens"):
            enc.encode(["a text"])


# ---- minilm ------------------------------------------------------------------------------------


def test_minilm_token_vectors_on_conll(minilm_tokens, conll):
    sents = conll[:100]
    texts = [" ".join(s) for s in sents]
    result = minilm_tokens.encode_tokens(texts, sents)
    check_spans(texts, result, 384)
    assert [[t for t, _, _ in spans] for spans in result.tokens] == sents
    assert all(np.abs(v).sum(axis=1).all() for v in result.vectors)  # every CoNLL word has pieces
    assert not np.concatenate(result.oov).any()
    few = minilm_tokens.encode_tokens(texts[:20], sents[:20]).vectors
    again = minilm_tokens.encode_tokens(texts[:20], sents[:20]).vectors
    for a, b, c in zip(few, again, result.vectors):
        np.testing.assert_array_equal(a, b)  # the same input gives the same vectors
        np.testing.assert_allclose(a, c, atol=1e-4)  # in other batches: equal up to float rounding


def test_subword_and_layer_options_change_the_vectors(minilm_tokens, conll):
    sents = conll[:20]
    texts = [" ".join(s) for s in sents]

    def vectors(**options) -> np.ndarray:
        enc = get_encoder("minilm", device="cpu", granularity="token", **options)
        return np.concatenate(enc.encode_tokens(texts, sents).vectors)

    first, mean, last = vectors(), vectors(subword="mean"), vectors(layers="last")  # the default: last4
    tokenizer = minilm_tokens.model().tokenizer
    pieces = np.array([len(tokenizer.tokenize(w)) for s in sents for w in s])
    single = pieces == 1
    assert single.any() and (~single).any()
    np.testing.assert_allclose(first[single], mean[single], atol=1e-6)  # one piece: first == mean
    assert not np.allclose(first[~single], mean[~single], atol=1e-3)
    assert np.median(cosines(first, last)) < 0.99


def test_normalize_option_gives_unit_token_vectors(conll):
    sents = conll[:5]
    enc = get_encoder("minilm", device="cpu", granularity="token", normalize=True)
    unit = enc.encode_tokens([" ".join(s) for s in sents], sents)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate(unit.vectors), axis=1), 1.0, atol=1e-5)


def long_sentence(conll: list[list[str]], start: int, n_words: int = 400) -> list[str]:
    words: list[str] = []
    for sentence in conll[start:]:
        words += sentence
        if len(words) >= n_words:
            return words[:n_words]
    raise AssertionError("not enough text")


def test_a_sentence_longer_than_a_window_keeps_every_word(minilm_tokens, conll):
    words = long_sentence(conll, 3000)  # real text: a run of consecutive CoNLL sentences, 400 words
    tokenizer = minilm_tokens.model().tokenizer
    piece_word = np.asarray(tokenizer(words, is_split_into_words=True, add_special_tokens=False, verbose=False).word_ids(0))
    assert len(piece_word) > 256
    result = minilm_tokens.encode_tokens([" ".join(words)], [words])
    stitched = result.vectors[0]
    assert stitched.shape == (400, 384) and np.abs(stitched).sum(axis=1).all() and not result.oov[0].any()

    # each word's vector is exactly the one its window gives when encoded on its own
    windows = plan_windows(piece_word, size=254, overlap=minilm_tokens.stride)
    choice = assign_pieces(piece_word, windows)
    assert len(windows) >= 2
    for k, (a, b) in enumerate(windows):
        ids = sorted(set(piece_word[a:b].tolist()))
        alone = minilm_tokens.encode_tokens([" ".join(words[i] for i in ids)], [[words[i] for i in ids]]).vectors[0]
        mine = [j for j, i in enumerate(ids) if (choice[piece_word == i] == k).all()]
        np.testing.assert_allclose(stitched[[ids[j] for j in mine]], alone[mine], atol=1e-4)

    # and close to a one-window encoding of the sentence's centre part (the middle 254 pieces)
    centre = len(piece_word) // 2
    lo, hi = piece_word[centre - 127] + 1, piece_word[centre + 126]
    part = words[lo:hi]
    alone = minilm_tokens.encode_tokens([" ".join(part)], [part]).vectors[0]
    inner = slice(len(part) // 4, len(part) - len(part) // 4)  # words with context on both sides in both
    cos = cosines(stitched[lo:hi][inner], alone[inner])
    assert cos.mean() > 0.9 and cos.min() > 0.6


def test_minilm_self_tokenised_spans_point_into_the_original_text(minilm_tokens):
    texts = [ODD, "EU rejects German call to boycott British lamb.", "", "  \t "]
    result = minilm_tokens.encode_tokens(texts)
    check_spans(texts, result, 384)
    words = [t for t, _, _ in result.tokens[0]]
    assert words[:4] == ["Hello", "wörld", "ok", "日"] and "İSTANBUL" in words
    assert words[words.index("U"):][:4] == ["U", ".", "S", "."]  # BERT splits punctuation off
    assert result.tokens[2] == [] and result.vectors[2].shape == (0, 384)


def test_a_word_with_no_pieces_gets_a_zero_vector_and_an_oov_flag(minilm_tokens):
    words = ["Peter", "\x07", "Blackburn", "\u20ac\u00a7\u2603"]
    result = minilm_tokens.encode_tokens([" ".join(words)], [words])
    v, oov = result.vectors[0], result.oov[0]
    assert not v[1].any() and oov.tolist() == [False, True, False, oov[3]]
    assert v[0].any() and v[2].any()


def test_tokens_that_do_not_match_the_text_are_refused(minilm_tokens, word2vec_tokens):
    for enc in (minilm_tokens, word2vec_tokens):
        with pytest.raises(EncoderError, match=r"input 1: token 1 \('b'\) does not follow"):
            enc.encode_tokens(["a b", "a x b"], [["a", "b"], ["a", "b"]])
        with pytest.raises(EncoderError, match="2 texts but 1 token lists"):
            enc.encode_tokens(["a", "b"], [["a"]])


def test_tokens_need_not_be_joined_by_single_spaces(minilm_tokens, word2vec_tokens):
    text = "  New York\tis  big "
    for enc in (minilm_tokens, word2vec_tokens):
        result = enc.encode_tokens([text], [["New York", "is", "big"]])
        assert result.tokens[0] == [("New York", 2, 10), ("is", 11, 13), ("big", 15, 18)]


# ---- word2vec ----------------------------------------------------------------------------------


def test_word2vec_token_vectors_and_oov_flags(word2vec_tokens, conll):
    kv = word2vec_tokens.vectors()
    words = ["Germany", "'s", "U.S.", ",", "qwzxjk", "isn\u2019t", "Rock"]
    result = word2vec_tokens.encode_tokens([" ".join(words)], [words])
    check_spans([" ".join(words)], result, 100)
    assert result.oov[0].tolist() == [False, True, True, True, True, False, False]
    v = result.vectors[0]
    np.testing.assert_array_equal(v[0], kv["germany"])
    np.testing.assert_array_equal(v[5], kv["isn't"])
    assert not v[result.oov[0]].any()

    sents = conll[:300]
    texts = [" ".join(s) for s in sents]
    on_conll = word2vec_tokens.encode_tokens(texts, sents)
    check_spans(texts, on_conll, 100)
    oov = np.concatenate(on_conll.oov)
    assert 0.05 < oov.mean() < 0.4  # punctuation and names are out of the vocabulary


def test_word2vec_self_tokenised_spans_point_into_the_original_text(word2vec_tokens):
    result = word2vec_tokens.encode_tokens([ODD])
    check_spans([ODD], result, 100)
    words = [t for t, _, _ in result.tokens[0]]
    assert words[:3] == ["Hello", "wörld", "ok"]
    # spans of the original text, not of the unescaped one
    assert "AT" in words and "don&#39;t" in words and "isn\u2019t" in words
    assert [t for t, _, _ in tokenize_spans(ODD)] == tokenize(ODD)


def test_word2vec_spans_agree_with_the_tokenizer_on_real_text(sms_lines):
    texts = [line.partition("\t")[2] for line in sms_lines]
    for text in texts:
        spans = tokenize_spans(text)
        assert [t for t, _, _ in spans] == tokenize(text)
        assert all(tokenize(text[a:b]) == [t] for t, a, b in spans if "&" not in text[a:b])


# ---- windows -----------------------------------------------------------------------------------


def test_windows_cover_every_piece_within_the_size():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lengths = rng.integers(1, 6, size=rng.integers(1, 300))
        lengths[rng.integers(len(lengths))] = rng.integers(1, 40)  # now and then a very long word
        piece_word = np.repeat(np.arange(len(lengths)), lengths)
        size, overlap = int(rng.integers(8, 64)), 0
        overlap = int(rng.integers(0, size // 2 + 1))
        windows = plan_windows(piece_word, size=size, overlap=overlap)
        assert windows[0][0] == 0 and windows[-1][1] == len(piece_word)
        assert all(0 < b - a <= size for a, b in windows)
        assert all(a2 <= b1 and a2 > a1 for (a1, b1), (a2, _) in zip(windows, windows[1:]))  # no gap, progress
        choice = assign_pieces(piece_word, windows)
        for p, k in enumerate(choice):
            assert windows[k][0] <= p < windows[k][1]
        for w in range(len(lengths)):  # a word that fits a window comes from one window
            if lengths[w] <= size:
                assert len(set(choice[piece_word == w].tolist())) == 1
