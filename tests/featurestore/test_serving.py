"""The warm search handle in one process: reused, hot-swapped on a newer generation, bounded in
number; and the weights digest computed once per weights file, across processes."""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pytest

from featurestore import TextSource, materialize, search, searcher
from featurestore.errors import NotFoundError
from featurestore.index import build_index, update_index
from featurestore.serving import clear_searchers, loaded_searchers


@pytest.fixture
def two_views(tmp_path, sms_file, word2vec):
    store = tmp_path / "store"
    source = TextSource(str(sms_file(150)), format="sms", id_col="@line", keep=("label", "text"))
    materialize(source, "a", "word2vec", store=store)
    materialize(source, "b", "word2vec", store=store)
    build_index("a", store=store)
    clear_searchers()
    yield store
    clear_searchers()


def test_search_reuses_one_warm_handle_and_swaps_to_a_newer_generation(two_views, sms_file):
    first = search("a", store=two_views, ids=["3"], k=3)
    handle = searcher("a", store=two_views)
    assert search("a", store=two_views, ids=["3"], k=3) == first and handle.swaps == 0
    assert loaded_searchers() == [handle] and searcher("a", handle.encoder_id, store=two_views) is handle
    materialize(TextSource(str(sms_file(200, name="more.sms")), format="sms", id_col="@line", keep=("label", "text")), "a", "word2vec", store=two_views)
    update_index("a", store=two_views)
    again = search("a", store=two_views, ids=["180"], k=1)  # an entity the first generation did not have
    assert again[0][0]["entity_id"] == "180" and again.generation.index_version > first.generation.index_version
    assert again.generation.table_version == again.generation.index_version and handle.swaps == 1


def test_the_freshness_check_runs_at_most_every_check_every_seconds(two_views, sms_file, monkeypatch):
    """Between checks a handle answers from the generation it holds; the next check swaps."""
    from featurestore import Store
    from featurestore.serving import Searcher

    store = Store(two_views)
    lazy = Searcher(store, store.resolve_table("a"), check_every=3600)
    first = lazy.search(ids=["3"], k=2)
    materialize(TextSource(str(sms_file(200, name="more.sms")), format="sms", id_col="@line", keep=("label", "text")), "a", "word2vec", store=two_views)
    update_index("a", store=two_views)
    assert lazy.search(ids=["3"], k=2).generation == first.generation
    with pytest.raises(NotFoundError, match="'180'"):
        lazy.search(ids=["180"], k=1)  # not in the generation held
    assert lazy.refresh(force=True) and lazy.search(ids=["180"], k=1)[0][0]["entity_id"] == "180"
    monkeypatch.setenv("FEATURESTORE_SEARCH_CHECK_SECONDS", "0")
    assert Searcher(store, store.resolve_table("a")).check_every == 0
    monkeypatch.delenv("FEATURESTORE_SEARCH_CHECK_SECONDS")
    assert Searcher(store, store.resolve_table("a")).check_every == 0.01


def test_check_false_answers_from_the_generation_in_force_and_never_loads(two_views, sms_file):
    """The service's event loop answers warm views with ``check=False``: no freshness check, so no
    load, until ``claim_check`` hands one call to a thread, whose check swaps."""
    from featurestore import Store
    from featurestore.serving import loaded_searcher

    store = Store(two_views)
    assert loaded_searcher("a", store=store) is None  # nothing loaded yet, and asking loads nothing
    handle = searcher("a", store=two_views)
    assert loaded_searcher("a", store=store) is handle
    handle.check_every = 3600
    first = handle.search(ids=["3"], k=2, check=False)
    assert not handle.claim_check()
    materialize(TextSource(str(sms_file(200, name="more.sms")), format="sms", id_col="@line", keep=("label", "text")), "a", "word2vec", store=two_views)
    update_index("a", store=two_views)
    handle.check_every = 1.0
    time.sleep(1.05)  # a check is due: the first caller takes it, the others answer from the state in force
    assert handle.claim_check() and not handle.claim_check()
    handle.check_every = 0  # a check is due on every call now
    assert handle.claim_check() and handle.claim_check()  # every caller takes it
    assert handle.search(ids=["3"], k=2, check=False).generation == first.generation and handle.swaps == 0
    assert handle.features(["180"], check=False)["unknown"] == ["180"]
    assert handle.search(ids=["180"], k=1)[0][0]["entity_id"] == "180" and handle.swaps == 1


def test_a_bad_check_interval_is_one_line_and_exit_2(two_views, cli, monkeypatch):
    from tests.conftest import snapshot

    before = snapshot(two_views)
    monkeypatch.setenv("FEATURESTORE_SEARCH_CHECK_SECONDS", "soon")
    code, _, err = cli("search", "--view", "a", "--id", "3", "--store", str(two_views))
    assert code == 2 and err == "featurestore: error: FEATURESTORE_SEARCH_CHECK_SECONDS must be a number of seconds >= 0 (0: check on every query). Got 'soon' instead.\n"
    assert snapshot(two_views) == before


def test_hits_carry_the_kept_columns_of_their_own_rows(two_views):
    from featurestore import Store

    frame = Store(two_views).resolve_table("a").latest(["label", "text"])
    row = {e: i for i, e in enumerate(frame.ids.tolist())}
    hits = search("a", store=two_views, vectors=frame.vectors[[5, 40]], k=7)
    assert [len(q) for q in hits] == [7, 7]
    for query in hits:
        for hit in query:
            i = row[hit["entity_id"]]
            assert list(hit) == ["entity_id", "score", "label", "text"]
            assert (hit["label"], hit["text"]) == (frame.columns.column("label")[i].as_py(), frame.columns.column("text")[i].as_py())
    assert frame.columns.column("text")[5].as_py() == hits[0][0]["text"] and hits[0][0]["score"] == pytest.approx(1.0, abs=1e-5)


def test_a_view_without_an_index_answers_lookups_and_refuses_searches(two_views):
    handle = searcher("b", store=two_views)
    found = handle.features(["3", "nope"])
    assert [f["entity_id"] for f in found["found"]] == ["3"] and found["unknown"] == ["nope"] and found["vectors"].shape == (1, 100)
    with pytest.raises(NotFoundError, match="no index at .*featurestore index build"):
        handle.search(ids=["3"], k=2)


def test_the_cache_keeps_at_most_max_views_and_drops_the_least_recently_used(two_views):
    build_index("b", store=two_views)
    a = searcher("a", store=two_views, max_views=1)
    b = searcher("b", store=two_views, max_views=1)
    assert loaded_searchers() == [b]
    assert searcher("a", store=two_views, max_views=1) is not a  # loaded again


def test_the_weights_digest_is_read_from_the_cache_file_until_the_file_changes(tmp_path, monkeypatch):
    from featurestore.encoders import base

    monkeypatch.setenv("FEATURESTORE_CACHE_DIR", str(tmp_path / "cache"))
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(1 << 16))
    truth = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    monkeypatch.setattr(base, "_DIGESTS", {})
    assert base.file_digest(weights) == truth
    cache = tmp_path / "cache" / base.DIGEST_CACHE
    entries = json.loads(cache.read_text())
    assert list(entries.values()) == [truth]
    cache.write_text(json.dumps({k: "from-the-cache" for k in entries}))  # a new process reads it instead of hashing
    monkeypatch.setattr(base, "_DIGESTS", {})
    assert base.file_digest(weights) == "from-the-cache"
    weights.write_bytes(os.urandom(1 << 16))  # rewritten: new size or mtime, so hashed again
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    monkeypatch.setattr(base, "_DIGESTS", {})
    assert base.file_digest(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    assert len(json.loads(cache.read_text())) == 1  # the stale entry of the same path is dropped


def test_the_digest_works_when_the_cache_folder_cannot_be_written(tmp_path, monkeypatch):
    from featurestore.encoders import base

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FEATURESTORE_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(base, "_DIGESTS", {})
    weights = tmp_path / "w.bin"
    weights.write_bytes(np.arange(100, dtype=np.float32).tobytes())
    assert base.file_digest(weights) == hashlib.sha256(weights.read_bytes()).hexdigest()[:16]


def test_a_handle_over_a_bucket_follows_updates_and_each_work_folder_has_its_own(s3_store, sms_file, tmp_path, monkeypatch, word2vec):
    """Over ``s3://`` the check runs at most once a second (it costs requests); an update
    published by another machine is served after it, and a second work folder on the same
    bucket (another machine) gets its own handle and its own copy of the index."""
    monkeypatch.delenv("FEATURESTORE_SEARCH_CHECK_SECONDS")  # the bucket default, which the s3_store fixture sets to 0
    clear_searchers()
    source = TextSource(str(sms_file(120)), format="sms", id_col="@line", keep=("label", "text"))
    materialize(source, "a", "word2vec", store=s3_store)
    build_index("a", store=s3_store)
    first = search("a", store=s3_store, ids=["3"], k=2)
    handle = searcher("a", store=s3_store)
    assert handle.check_every == 1.0 and first.generation.index_version >= 0
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "machine-b"))
    other = searcher("a", store=s3_store)
    assert other is not handle and (tmp_path / "machine-b").is_dir()
    materialize(TextSource(str(sms_file(160, name="more.sms")), format="sms", id_col="@line", keep=("label", "text")), "a", "word2vec", store=s3_store)
    update_index("a", store=s3_store)  # published from machine b
    monkeypatch.setenv("FEATURESTORE_WORK_DIR", str(tmp_path / "work"))
    deadline = time.monotonic() + 10
    while search("a", store=s3_store, ids=["3"], k=1).generation.index_version == first.generation.index_version:
        assert time.monotonic() < deadline, "the published index was not picked up"
        time.sleep(0.2)
    assert search("a", store=s3_store, ids=["150"], k=1)[0][0]["entity_id"] == "150"
    clear_searchers()
