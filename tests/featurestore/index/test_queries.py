"""Search queries are checked in the library, so every caller (CLI, Python, a service) refuses the
same inputs with the same message; the checks run before any store read."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from featurestore.errors import InvalidArgumentError, SchemaMismatchError
from featurestore.index import build_index, search
from featurestore.index.queries import check_queries, query_vectors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one kind of query (text, image, id or vector). Got none."),
        ({"texts": ["a"], "ids": ["1"]}, "give exactly one kind of query (text, image, id or vector). Got texts, ids."),
        ({"texts": "free prize"}, "texts must be a list of strings, one per query. Got str 'free prize' instead; pass ['free prize']."),
        ({"texts": []}, "texts is empty: give at least one query"),
        ({"ids": ()}, "ids is empty: give at least one query"),
        ({"texts": ["ok", 5]}, "query text 2 of 2 is int 5, not a string"),
        ({"texts": ["ok", "\u00a0\n"]}, "query text 2 of 2 is empty or only whitespace"),
        ({"ids": ["3", " "]}, "query id 2 of 2 is empty or only whitespace"),
        ({"images": [b"cat.jpg"]}, "query image path 1 of 1 is bytes b'cat.jpg', not a string"),
    ],
)
def test_bad_query_batches_are_refused_naming_the_query(kwargs, message):
    query = {"texts": None, "images": None, "ids": None, "vectors": None, **kwargs}
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        check_queries(**query)


def test_image_paths_may_be_path_objects():
    assert check_queries(None, [Path("cat.jpg")], None, None) == "images"


@pytest.mark.parametrize(
    ("vectors", "error", "message"),
    [
        (np.ones((2, 3), np.complex64), InvalidArgumentError, "query vectors must be numbers (float32). Got an array of complex64 instead."),
        (np.ones((2, 3), bool), InvalidArgumentError, "Got an array of bool instead."),
        ([[1.0, 2.0], [3.0]], InvalidArgumentError, "query vectors must be an array of shape (n, 3); rows of different lengths were given"),
        (np.ones(4, np.float32), SchemaMismatchError, "must have dimension 3 for e-1, in an array of shape (n, 3). Got shape (4,) instead."),
    ],
)
def test_query_vectors_refuse_what_is_not_an_n_by_dim_array_of_numbers(vectors, error, message):
    with pytest.raises(error, match=re.escape(message)):
        query_vectors(vectors, 3, "e-1")


def test_one_vector_and_integer_vectors_are_taken_as_float32_rows():
    out = query_vectors([1, 2, 3], 3, "e-1")
    assert out.shape == (1, 3) and out.dtype == np.float32


def test_search_refuses_a_single_string_before_reading_the_store(sms_view, tmp_path):
    build_index("sms", store=sms_view)
    with pytest.raises(InvalidArgumentError, match=re.escape("texts must be a list of strings, one per query. Got str 'win' instead")):
        search("sms", store=sms_view, texts="win")
    with pytest.raises(InvalidArgumentError, match=re.escape("query text 1 of 1 is empty")):
        search("nope", store=tmp_path / "nowhere", texts=[""])  # refused before the (missing) view is looked up
    assert not (tmp_path / "nowhere").exists()
    [hits] = search("sms", store=sms_view, texts=["win a prize"], k=3)
    assert len(hits) == 3 and hits[0]["score"] > 0


def test_check_vectors_clears_a_batch_in_one_pass_and_names_the_first_bad_row():
    from featurestore.errors import EncoderError
    from featurestore.index.queries import check_vectors

    good = np.ones((3, 4), np.float32)
    check_vectors(good, "cosine", "vectors", None, encoder_id="e-1")
    # squared norms that overflow or underflow float32 leave the one pass to the row checks, which pass them
    check_vectors(np.full((1, 4), 1e20, np.float32), "cosine", "vectors", None, encoder_id="e-1")
    check_vectors(np.full((1, 4), 1e-30, np.float32), "cosine", "vectors", None, encoder_id="e-1")
    check_vectors(np.zeros((1, 4), np.float32), "l2", "vectors", None, encoder_id="e-1")  # a zero vector has a distance
    bad = good.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidArgumentError, match=re.escape("query vector 3 of 3 holds NaN or infinite values")):
        check_vectors(bad, "l2", "vectors", None, encoder_id="e-1")
    bad[2, 1], bad[1] = 1.0, 0.0
    with pytest.raises(EncoderError, match=re.escape("query text 2 of 3 ('b') is the zero vector for e-1: none of its words")):
        check_vectors(bad, "cosine", "texts", ["a", "b", "c"], encoder_id="e-1")


def test_squared_norms_are_the_same_through_faiss_and_numpy():
    from featurestore.vectors import _faiss, squared_norms

    assert _faiss() is not None  # the index extra: the first call below goes through FAISS
    x = np.random.default_rng(3).standard_normal((5, 384)).astype(np.float32)
    x[4] = np.inf
    fast = squared_norms(x)  # FAISS's kernel: float32, C-contiguous
    slow = squared_norms(np.asfortranarray(x))  # numpy's vecdot
    assert np.allclose(fast[:4], slow[:4], rtol=1e-6) and fast[4] == slow[4] == np.inf
    assert squared_norms(np.full((1, 4), 1e20, np.float32)) == [np.inf]


def test_query_vectors_returns_a_float32_matrix_as_it_is():
    given = np.ones((2, 3), np.float32)
    assert query_vectors(given, 3, "e-1") is given
    assert query_vectors(given.T.copy().T, 3, "e-1").flags.c_contiguous  # a strided view is made contiguous
