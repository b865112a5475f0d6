"""Inputs that used to be accepted and should not be (issue 12, item 6): each is one line on
stderr, exit code 2, and a store left as it was; or, for one bad record among good ones, a
failed row with its reason while the rest are stored."""

from __future__ import annotations

import json
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.store import Store, TableMeta
from tests.conftest import assert_user_error, snapshot
from tests.featurestore.index.test_index import _synthetic_rows, clustered


@pytest.fixture(scope="module")
def sms_store(tmp_path_factory, sms_lines, word2vec):
    """View 'sms' (word2vec, 300 SMS, label kept) with a Flat index, made through the CLI."""
    from flows.cli.main import main

    root = tmp_path_factory.mktemp("inputs")
    source = root / "SMSSpamCollection"
    source.write_text("\n".join(sms_lines[:300]) + "\n", encoding="utf-8")
    store = root / "store"
    args = ["materialize", source, "--view", "sms", "--encoder", "word2vec", "--store", store, "--id-col", "@line", "--keep", "label", "--runner", "inline"]
    assert main([str(a) for a in args]) == 0
    assert main(["index", "build", "--view", "sms", "--store", str(store)]) == 0
    return store


@pytest.fixture(scope="module")
def wide_store(tmp_path_factory):
    """View 'wide': 300 rows of 384-d vectors (MiniLM's size) in a real Delta table, no index. Its
    read cache is written here, as the first read of any command would write it."""
    store = Store(tmp_path_factory.mktemp("wide") / "store")
    meta = TableMeta(view="wide", encoder_id="synth-1", encoder_name="synth", encoder_spec={}, dim=384, metric="cosine", modality="text")
    table = store.table("wide", meta.encoder_id)
    table.append(_synthetic_rows([f"e{i}" for i in range(300)], clustered(300, 384)), meta)
    assert table.snapshot() is not None
    return store.path


def unchanged(cli, store, *args: str, message: str) -> None:
    """``args`` fail with ``message`` as one line, exit 2, and leave every file of ``store`` as it was."""
    before = snapshot(store)
    assert_user_error(cli(*args), message)
    assert snapshot(store) == before


# ------------------------------------------------------------------------ sources


def parquet(file, **columns) -> str:
    pq.write_table(pa.table(columns), file)
    return str(file)


@pytest.mark.parametrize(
    ("columns", "extra", "message"),
    [
        ({"id": ["a", "b"], "text": pa.array([1, 2], pa.int64()), "body": ["x", "y"]}, [],
         "text column 'text' holds int64 values, but it must hold text (a string column); pick another column with --text-col (string columns: id, body)"),
        ({"id": ["a", "b"], "text": pa.array([[1.0, 2.0], [3.0]], pa.list_(pa.float64()))}, [],
         "text column 'text' holds list<element: double> values, but it must hold text"),
        ({"id": pa.array([[1], [2]]), "text": ["x", "y"]}, [], "id column 'id' holds list<element: int64> values, but it must hold ids (a string or integer column)"),
        ({"id": ["a", "b"], "text": ["x", "y"], "when": pa.array([[1], [2]])}, ["--time-col", "when"], "time column 'when' holds list<element: int64> values"),
        ({"id": ["a", "b"], "text": ["x", "y"], "meta": pa.array([{"k": 1}, {"k": 2}])}, ["--keep", "meta"], "keep column 'meta' holds struct<k: int64> values"),
        ({"id": ["a", "b"], "text": pa.array([b"x", b"y"], pa.binary())}, [], "text column 'text' holds binary values"),
    ],
    ids=["int64-text", "list-double-text", "list-id", "list-time", "struct-keep", "binary-text"],
)
def test_a_parquet_column_of_the_wrong_type_fails_the_plan(sms_store, tmp_path, cli, columns, extra, message):
    path = parquet(tmp_path / "in.parquet", **columns)
    unchanged(cli, sms_store, "materialize", path, "--view", "sms", "--encoder", "word2vec", "--store", sms_store,
              "--id-col", "id", "--runner", "inline", *extra, message=f"in.parquet: {message}")


def test_an_image_table_whose_path_column_is_not_strings_fails_the_plan(tmp_path, cli):
    path = parquet(tmp_path / "images.parquet", path=[1, 2], label=["ants", "bees"])
    store = tmp_path / "s"
    assert_user_error(cli("materialize", path, "--format", "images", "--view", "im", "--encoder", "efficientnet-lite0", "--store", store),
                      "images.parquet: path column 'path' holds int64 values, but it must hold file paths (a string column); "
                      "pick another column with --path-col (string columns: label)")
    assert not store.exists()


def test_jsonl_texts_that_are_not_strings_and_null_or_blank_texts_are_failed_rows(tmp_path, cli, word2vec):
    path = tmp_path / "in.jsonl"
    records = [{"id": "a", "text": "free prize now"}, {"id": "b", "text": 123}, {"id": "c", "text": [1.5, 2]},
               {"id": "d", "text": None}, {"id": "e", "text": " \t "}, {"id": "f", "text": "see you later"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, err = cli("materialize", path, "--view", "v", "--encoder", "word2vec", "--store", tmp_path / "s",
                         "--id-col", "id", "--runner", "inline", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["encoded"], summary["failed"]) == (2, 4)
    assert [(f["entity_id"], f["reason"]) for f in summary["failures"]] == [
        ("b", "the text is a number (123), not a string"), ("c", "the text is a list ([1.5, 2]), not a string"),
        ("d", "empty text (null)"), ("e", "empty text")]
    assert sorted(Store(tmp_path / "s").resolve_table("v").latest().ids.tolist()) == ["a", "f"]
    before = snapshot(tmp_path / "s")
    assert_user_error(cli("materialize", path, "--view", "v2", "--encoder", "word2vec", "--store", tmp_path / "s",
                          "--id-col", "id", "--runner", "inline", "--strict"),
                      "in.jsonl: line 2: the text is a number (123), not a string (--strict makes this fatal)")
    path.write_text(json.dumps({"id": ["x"], "text": "hi"}) + "\n")
    assert_user_error(cli("materialize", path, "--view", "v", "--encoder", "word2vec", "--store", tmp_path / "s", "--id-col", "id"),
                      "in.jsonl: line 1: the id in column 'id' is a list; ids must be strings or integers")
    assert snapshot(tmp_path / "s") == before


@pytest.mark.parametrize("value", ["0", "-5"])
def test_a_shard_size_below_one_is_one_line_not_a_usage_box(sms_store, sms_file, cli, value):
    unchanged(cli, sms_store, "materialize", sms_file(30), "--view", "sms", "--encoder", "word2vec", "--store", sms_store,
              "--id-col", "@line", "--shard-size", value, message=f"shard size (--shard-size) must be a positive int. Got {value} instead.")


# -------------------------------------------------------------------------- index


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--memory-budget", "1B"], "memory budget 1B is below what any index of 300 vectors of 100 dims needs: the smallest, Flat, "
                                    "takes 120KB. Pass --memory-budget 120KB or more."),
        (["--memory-budget", "0"], "memory budget must be a positive size such as 2GB or 512MB. Got '0' instead."),
        (["--memory-budget", "1.5.3GB"], "memory budget must look like 2GB, 512MB or a number of bytes. Got '1.5.3GB' instead."),
        (["--index-type", "flat", "--memory-budget", "10KB"], "memory budget 10KB is too small for a flat index of 300 vectors of 100 dims"),
        (["--target-recall", "0"], "target recall must be a number in (0, 1], e.g. 0.95. Got 0.0 instead."),
        (["--target-recall", "1.5"], "target recall must be a number in (0, 1], e.g. 0.95. Got 1.5 instead."),
        (["--target-recall", "nan"], "target recall must be a number in (0, 1], e.g. 0.95. Got nan instead."),
    ],
    ids=["1B", "zero", "two-dots", "flat-over-budget", "recall-0", "recall-1.5", "recall-nan"],
)
def test_bad_index_build_options(sms_store, cli, extra, message):
    unchanged(cli, sms_store, "index", "build", "--view", "sms", "--store", sms_store, *extra, message=message)


def test_the_issue_case_300_rows_of_384_dims_under_100kb_is_a_quick_error_then_a_sane_index(wide_store, cli):
    started = time.perf_counter()
    unchanged(cli, wide_store, "index", "build", "--view", "wide", "--store", wide_store, "--memory-budget", "100KB",
              message="memory budget 100KB is below what any index of 300 vectors of 384 dims needs: the smallest, Flat, takes 453KB. "
                      "Pass --memory-budget 453KB or more.")
    assert time.perf_counter() - started < 30
    code, out, err = cli("index", "build", "--view", "wide", "--store", wide_store, "--memory-budget", "453KB", "--json")
    assert code == 0, err
    info = json.loads(out)
    assert (info["factory"], info["rows"], info["recall_at_10"]) == ("Flat", 300, 1.0)
    assert info["memory_bytes"] <= 453 * 1024


def test_training_past_the_bound_is_one_line_and_writes_no_index(wide_store, cli, monkeypatch):
    monkeypatch.setenv("FEATURESTORE_INDEX_TRAIN_SECONDS", "0.000001")
    before = snapshot(wide_store)
    result = cli("index", "build", "--view", "wide", "--store", wide_store, "--index-type", "ivf")
    assert_user_error(result, "training the IVF7,Flat index on 300 vectors passed the bound of 1e-06 s")
    assert "raise FEATURESTORE_INDEX_TRAIN_SECONDS" in result[2]
    assert snapshot(wide_store) == before


@pytest.mark.parametrize("value", ["-0.1", "1.5", "nan"])
def test_a_rebuild_share_outside_0_1_is_refused(sms_store, cli, value):
    unchanged(cli, sms_store, "index", "update", "--view", "sms", "--store", sms_store, "--rebuild-share", value,
              message=f"rebuild share must be a number in [0, 1], e.g. 0.2. Got {float(value)} instead.")


def test_a_negative_retention_is_one_line_not_a_usage_box(sms_store, cli):
    unchanged(cli, sms_store, "compact", "--view", "sms", "--store", sms_store, "--vacuum", "--retention-hours", "-1",
              message="retention hours (--retention-hours) must be an int >= 0. Got -1 instead.")


# ------------------------------------------------------------------------- search


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ([""], "query text 1 of 1 is empty or only whitespace; give something to search for"),
        (["free prize", ""], "query text 2 of 2 is empty or only whitespace"),
        (["free prize", " \t "], "query text 2 of 2 is empty or only whitespace"),
        (["free prize", "xyzzyqq"], "query text 2 of 2 ('xyzzyqq') is the zero vector for word2vec-"),
    ],
    ids=["empty", "empty-in-a-batch", "whitespace", "no-known-word"],
)
def test_a_text_query_with_nothing_to_search_for_is_refused(sms_store, cli, texts, message):
    args = [a for t in texts for a in ("--text", t)]
    unchanged(cli, sms_store, "search", "--view", "sms", "--store", sms_store, *args, message=message)


@pytest.mark.parametrize(
    ("vectors", "message"),
    [
        (np.full((2, 100), np.nan, np.float32), "query vector 1 of 2 holds NaN or infinite values"),
        (np.vstack([np.ones((1, 100)), np.full((1, 100), np.inf)]).astype(np.float32), "query vector 2 of 2 holds NaN or infinite values"),
        (np.ones((1, 7), np.float32), "query vectors must have dimension 100 for word2vec-"),
        (np.ones((1, 2, 100), np.float32), "Got shape (1, 2, 100) instead."),
        (np.zeros((0, 100), np.float32), "the query vectors are empty (0 rows): give at least one vector"),
        (np.zeros((1, 100), np.float32), "query vector 1 of 1 is the zero vector for word2vec-"),
        (np.array(["a", "b"]), "query vectors must be numbers (float32). Got an array of <U1 instead."),
    ],
    ids=["nan", "inf", "wrong-dim", "3-d", "empty", "zero", "strings"],
)
def test_a_bad_vector_file_is_refused(sms_store, tmp_path, cli, vectors, message):
    path = tmp_path / "q.npy"
    np.save(path, vectors)
    unchanged(cli, sms_store, "search", "--view", "sms", "--store", sms_store, "--vector-file", path, message=message)


@pytest.mark.parametrize("k", ["0", "-3"])
def test_k_below_one_is_refused(sms_store, cli, k):
    unchanged(cli, sms_store, "search", "--view", "sms", "--store", sms_store, "--text", "free prize", "-k", k,
              message=f"k must be a positive int. Got {k} instead.")


def test_a_good_batch_still_searches(sms_store, cli):
    code, out, err = cli("search", "--view", "sms", "--store", sms_store, "--text", "free prize", "--text", "see you later", "-k", "3", "--json")
    assert code == 0, err
    assert [len(hits) for hits in json.loads(out)] == [3, 3]


# --------------------------------------------------------------------- labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (pa.array([[1, 2], [3]] * 150), "labels 'label' hold lists (e.g. [1, 2]); a label is one class per row"),
        (pa.array([0.25, 0.75] * 150), "labels 'label' hold numbers that are not whole (e.g. 0.25); a label names a class"),
    ],
    ids=["lists", "fractions"],
)
def test_a_label_file_of_the_wrong_type_is_refused(sms_store, tmp_path, cli, labels, message):
    path = parquet(tmp_path / "labels.parquet", entity_id=[str(i) for i in range(1, 301)], label=labels)
    unchanged(cli, sms_store, "train", "classify", "--view", "sms", "--labels", path, "--runner", "inline", "--store", sms_store, message=message)


# ------------------------------------------------------------------------- images


def test_a_query_image_that_is_not_an_image_is_refused_by_position(tmp_path, image_folder, cli):
    from tests.flows.conftest import IMAGES

    store = tmp_path / "s"
    assert cli("materialize", image_folder, "--view", "bees", "--encoder", "efficientnet-lite0", "--store", store, "--runner", "inline")[0] == 0
    assert cli("index", "build", "--view", "bees", "--store", store)[0] == 0
    fake = tmp_path / "fake.jpg"
    fake.write_text("not an image")
    good = str(next((IMAGES / "ants").glob("*.jpg")))
    unchanged(cli, store, "search", "--view", "bees", "--store", store, "--image", good, "--image", fake,
              message=f"cannot encode query image 2 of 2 ({str(fake)!r}): not an image (unrecognised format)")
    unchanged(cli, store, "search", "--view", "bees", "--store", store, "--image", "", message="query image path 1 of 1 is empty")


# ------------------------------------------------------------------------- serve


@pytest.mark.parametrize("value", ["0", "-2"])
def test_a_serve_limit_below_one_is_one_line_before_any_server_starts(tmp_path, sms_file, cli, value):
    from tests.flows.conftest import project

    config = project(tmp_path, sms_file, 10, index=False, heads=False, schedule={"interval": 3600})
    unchanged(cli, tmp_path, "serve", "--config", config, "--limit", value, message=f"limit (--limit) must be a positive int. Got {value} instead.")


def test_a_kept_list_column_as_labels_and_a_negative_seed_are_refused(tmp_path, cli, word2vec):
    store = tmp_path / "s"
    path = parquet(tmp_path / "tagged.parquet", id=[f"d{i}" for i in range(40)], text=["free prize now", "see you at lunch"] * 20,
                   tags=pa.array([["a", "b"], ["c"]] * 20), label=["spam", "ham"] * 20)
    assert cli("materialize", path, "--view", "t", "--encoder", "word2vec", "--store", store, "--id-col", "id",
               "--keep", "tags,label", "--runner", "inline")[0] == 0
    unchanged(cli, store, "train", "classify", "--view", "t", "--labels", "tags", "--runner", "inline", "--store", store,
              message="labels 'tags' hold lists (e.g. ['a', 'b']); a label is one class per row")
    unchanged(cli, store, "train", "classify", "--view", "t", "--seed", "-1", "--runner", "inline", "--store", store,
              message="seed must be an int from 0 to 2**32 - 1 (NumPy's seed range). Got -1 instead.")
