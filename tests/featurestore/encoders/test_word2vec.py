"""word2vec encoder on the real vectors: tokenizer, pooling, OOV accounting, file formats."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore.encoders import get_encoder
from featurestore.encoders.word2vec import Word2VecEncoder, tokenize
from featurestore.errors import EncoderError
from tests.conftest import GLOVE, need


def test_tokenizer_follows_the_training_recipe():
    assert tokenize("The U.S. isn\u2019t 3,000.5 &amp; `rock'n'roll`!") == ["the", "u", "s", "isn't", "3,000.5", "rock'n'roll"]


def test_sentence_vector_is_normalised_mean_of_known_words(word2vec):
    kv = word2vec.vectors()
    result = word2vec.encode_with_stats(["Cats chase mice quickly"])
    words = ["cats", "chase", "mice", "quickly"]
    expected = np.mean([kv[w] for w in words], axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(result.vectors[0], expected, rtol=1e-5, atol=1e-6)
    assert result.vectors.dtype == np.float32 and result.vectors.shape == (1, 100)
    assert result.n_tokens.tolist() == [4] and result.n_oov.tolist() == [0]


def test_oov_is_counted_and_unknown_text_gets_flagged_zero_vector(word2vec):
    result = word2vec.encode_with_stats(["money qwzxjk", "qwzxjk vbnmrt", "!!!"])
    assert result.n_oov.tolist() == [1, 2, 0]
    assert result.n_tokens.tolist() == [2, 2, 0]
    assert result.zero.tolist() == [False, True, True]
    assert not np.isnan(result.vectors).any()
    assert np.all(result.vectors[1:] == 0)


def test_similar_words_are_closer(word2vec):
    v = word2vec.encode(["king", "queen", "carburetor"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_sif_weighting_changes_vectors_and_encoder_id(word2vec):
    sif = get_encoder("word2vec", weighting="sif")
    assert sif.encoder_id != word2vec.encoder_id
    text = ["the cat sat on the mat"]
    a, b = word2vec.encode(text)[0], sif.encode(text)[0]
    assert not np.allclose(a, b)
    assert a @ b > 0.8  # same words, different weights


def test_encoding_is_deterministic(word2vec):
    texts = ["free entry in a weekly competition", "see you at lunch"]
    np.testing.assert_array_equal(word2vec.encode(texts), word2vec.encode(texts))


def test_glove_text_word2vec_text_and_gensim_native_agree(tmp_path):
    need(GLOVE)
    glove = Word2VecEncoder(GLOVE / "glove.6B.50d.top5k.txt")
    w2v_text = Word2VecEncoder(GLOVE / "glove.6B.50d.top5k.w2v.txt")
    assert (glove.format, w2v_text.format) == ("glove", "word2vec-text")
    assert glove.dim == w2v_text.dim == 50
    native_path = tmp_path / "glove.kv"
    glove.vectors().save(str(native_path))
    native = Word2VecEncoder(native_path)
    assert native.format == "gensim" and native.dim == 50
    texts = ["the president said on monday", "market prices fell"]
    np.testing.assert_allclose(glove.encode(texts), w2v_text.encode(texts), atol=1e-6)
    np.testing.assert_allclose(glove.encode(texts), native.encode(texts), atol=1e-6)
    assert glove.encoder_id != native.encoder_id  # different files, different digests


def test_w2v_prefix_takes_a_path_and_rejects_a_missing_one(tmp_path):
    need(GLOVE)
    enc = get_encoder(f"w2v:{GLOVE / 'glove.6B.50d.top5k.txt'}")
    assert enc.dim == 50 and enc.encoder_id.startswith("w2v-")
    with pytest.raises(EncoderError, match="word vectors not found"):
        get_encoder(f"w2v:{tmp_path / 'nope.bin'}")


def test_unreadable_vectors_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "vectors.txt"
    bad.write_text("just one line of words\nmore words here\n")
    with pytest.raises(EncoderError, match="cannot read word vectors"):
        Word2VecEncoder(bad).encode(["words"])
