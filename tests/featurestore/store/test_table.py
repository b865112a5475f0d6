"""Feature tables on a real Delta table: round trips, latest state, time travel, compaction."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from featurestore.errors import InvalidArgumentError, SchemaMismatchError, StoreError
from featurestore.store import FeatureTable, Store, TableMeta, vectors_to_binary
from featurestore.store.schema import TIMESTAMP

DIM = 8


def meta(dim: int = DIM, encoder_id: str = "test-0000000000") -> TableMeta:
    return TableMeta(view="v", encoder_id=encoder_id, encoder_name="test", encoder_spec={"kind": "test", "dim": dim}, dim=dim, metric="cosine", modality="text")


def rows(ids, vectors, *, deleted=None, label=None) -> pa.Table:
    n = len(ids)
    now = datetime.now(timezone.utc)
    cols = {
        "entity_id": pa.array(ids, pa.string()),
        "content_hash": pa.array([f"h{i}" for i in ids], pa.string()),
        "encoder_id": pa.array(["test-0000000000"] * n),
        "embedding": vectors_to_binary(vectors) if deleted is None else pa.nulls(n, pa.binary()),
        "event_timestamp": pa.array([now] * n, TIMESTAMP),
        "created_at": pa.array([now] * n, TIMESTAMP),
        "deleted": pa.array([deleted is not None] * n),
        "n_tokens": pa.array([1] * n, pa.int32()),
        "n_oov": pa.array([0] * n, pa.int32()),
        "zero_vector": pa.array([False] * n),
    }
    if label is not None:
        cols["label"] = pa.array(label)
    return pa.table(cols)


@pytest.fixture
def table(tmp_path):
    return Store(tmp_path).table("v", "test-0000000000")


def test_round_trip_is_exact_and_zero_copy(table):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((100, DIM)).astype(np.float32)
    table.append(rows([str(i) for i in range(100)], vectors, label=["a"] * 100), meta())
    frame = table.latest()
    np.testing.assert_array_equal(frame.vectors, vectors)
    assert frame.vectors.dtype == np.float32 and not frame.vectors.flags.owndata
    assert frame.ids.tolist() == [str(i) for i in range(100)]
    assert frame.columns.column_names == ["label"]
    assert frame.version == 0 and frame.encoder_id == "test-0000000000"


def test_latest_state_takes_newest_row_and_time_travel_sees_the_old_one(table):
    first = np.ones((3, DIM), np.float32)
    table.append(rows(["a", "b", "c"], first), meta())
    time.sleep(0.01)
    between = datetime.now(timezone.utc)
    time.sleep(0.01)
    table.append(rows(["b"], np.full((1, DIM), 2, np.float32)), meta())
    table.append(rows(["c"], np.zeros((1, DIM), np.float32), deleted=True), meta())
    latest = table.latest()
    assert sorted(latest.ids.tolist()) == ["a", "b"]
    assert latest.vectors[latest.ids.tolist().index("b")][0] == 2
    old = table.latest(as_of=0)
    assert sorted(old.ids.tolist()) == ["a", "b", "c"] and np.all(old.vectors == 1)
    by_time = table.latest(as_of=between.isoformat())
    assert by_time.version == 0
    assert table.state() == {"a": ("ha", None), "b": ("hb", None)}


def test_new_kept_columns_merge_into_the_schema(table):
    table.append(rows(["a"], np.ones((1, DIM), np.float32)), meta())
    table.append(rows(["b"], np.ones((1, DIM), np.float32), label=["x"]), meta())
    frame = table.latest(["label"])
    assert dict(zip(frame.ids.tolist(), frame.columns.column("label").to_pylist())) == {"a": None, "b": "x"}


def test_another_dimension_is_refused(table):
    table.append(rows(["a"], np.ones((1, DIM), np.float32)), meta())
    with pytest.raises(SchemaMismatchError, match="dim=8, but this write has dim=4"):
        table.append(rows(["b"], np.ones((1, 4), np.float32)), meta(dim=4))


def test_compaction_merges_files_and_keeps_the_data(table):
    for i in range(4):
        table.append(rows([f"e{i}"], np.full((1, DIM), i, np.float32)), meta())
    before = table.latest()
    result = table.compact()
    assert result["optimize"]["numFilesRemoved"] == 4
    after = table.latest()
    assert sorted(after.ids.tolist()) == sorted(before.ids.tolist())
    assert len(table.delta().file_uris()) == 1


def test_bad_as_of_and_missing_table(table, tmp_path):
    with pytest.raises(StoreError, match="materialize the view first"):
        table.latest()
    table.append(rows(["a"], np.ones((1, DIM), np.float32)), meta())
    with pytest.raises(InvalidArgumentError, match="`as_of` must be a table version"):
        table.latest(as_of="last tuesday")
    with pytest.raises(StoreError, match="cannot load"):
        table.latest(as_of=7)


def test_store_catalog_and_resolution(tmp_path):
    store = Store(tmp_path)
    store.table("v", "test-0000000000").append(rows(["a", "b"], np.ones((2, DIM), np.float32)), meta())
    [info] = store.info()
    assert (info.view, info.rows, info.version, info.dim) == ("v", 2, 0, DIM)
    assert store.resolve_table("v").uri == store.table_uri("v", "test-0000000000")
    assert store.resolve_table("v", "test").uri == store.table_uri("v", "test-0000000000")
    with pytest.raises(StoreError, match="view 'w' does not exist"):
        store.resolve_table("w")
    with pytest.raises(StoreError, match="invalid view name"):
        store.table("../escape", "x")


def test_unwritable_store_is_reported(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError, match="cannot write to the store"):
        Store(blocker / "store").ensure_writable()


def test_feature_table_opens_by_uri(table):
    table.append(rows(["a"], np.ones((1, DIM), np.float32)), meta())
    again = FeatureTable(table.uri)
    assert again.meta.dim == DIM and again.version() == 0


def test_reads_of_the_newest_version_come_from_a_snapshot_that_follows_commits(table, tmp_path):
    table.append(rows(["a", "b"], np.ones((2, DIM), np.float32), label=["x", "y"]), meta())
    first = table.latest()
    snapshots = list((tmp_path / "_cache").rglob("*.arrow"))
    assert len(snapshots) == 1
    second = table.latest(["label"])
    np.testing.assert_array_equal(first.vectors, second.vectors)
    assert second.columns.column("label").to_pylist() == ["x", "y"] and not second.vectors.flags.owndata
    table.append(rows(["c"], np.full((1, DIM), 3, np.float32), label=["z"]), meta())
    third = table.latest()
    assert sorted(third.ids.tolist()) == ["a", "b", "c"] and third.version == 1
    assert [p.parent.name for p in (tmp_path / "_cache").rglob("rows.arrow")] == ["v00000001-f2"]
    with pytest.raises(StoreError, match="columns \\['nope'\\] are not in"):
        table.latest(["nope"])


def test_rows_with_hashes_finds_one_row_per_stored_hash(table):
    table.append(rows(["a", "b"], np.ones((2, DIM), np.float32)), meta())
    table.append(rows(["c"], np.full((1, DIM), 2, np.float32)), meta())
    found = table.rows_with_hashes({"ha", "hc", "missing"}, ["embedding"])
    assert sorted(found.column("content_hash").to_pylist()) == ["ha", "hc"]


def _history(table) -> None:
    """Four commits: replacements, a tombstone, and a kept column that older files lack."""
    rng = np.random.default_rng(1)
    table.append(rows([f"e{i}" for i in range(50)], rng.standard_normal((50, DIM)).astype(np.float32)), meta())
    table.append(rows([f"e{i}" for i in range(0, 50, 3)], rng.standard_normal((17, DIM)).astype(np.float32), label=["x"] * 17), meta())
    table.append(rows(["e1", "e4"], np.zeros((2, DIM), np.float32), deleted=True), meta())
    table.append(rows([f"n{i}" for i in range(10)], rng.standard_normal((10, DIM)).astype(np.float32), label=["y"] * 10), meta())


def test_streamed_snapshot_holds_the_same_rows_as_the_delta_read(table, monkeypatch):
    import featurestore.store.snapshot as snapshot_module

    _history(table)
    monkeypatch.setattr(snapshot_module, "SNAPSHOT_BATCH_BYTES", 1)  # 1,024-row batches: several per file when files grow
    expected = table._latest_from_delta(None, as_of=3, with_vectors=True)
    streamed = table.latest()
    assert streamed.ids.tolist() == expected.ids.tolist() and len(streamed) == 50 - 2 + 10
    np.testing.assert_array_equal(streamed.vectors, expected.vectors)
    assert streamed.columns.equals(expected.columns) and streamed.columns.column_names == ["label"]
    assert not streamed.vectors.flags.owndata  # a view of the memory-mapped vectors file
    old = table.latest(as_of=1)  # as-of reads do not use the snapshot
    assert len(old) == 50 and old.columns.column("label").to_pylist().count("x") == 17


def test_snapshot_written_in_many_batches_maps_as_one_block(table, monkeypatch):
    import featurestore.store.snapshot as snapshot_module

    vectors = np.arange(3000 * DIM, dtype=np.float32).reshape(3000, DIM)
    table.append(rows([str(i) for i in range(3000)], vectors), meta())
    monkeypatch.setattr(snapshot_module, "SNAPSHOT_BATCH_BYTES", 1)
    snap = table.snapshot()
    assert snap.rows.column("entity_id").num_chunks == 3
    np.testing.assert_array_equal(snap.vectors, vectors)
    np.testing.assert_array_equal(snap.vector_file()[[2999, 0, 1500]], vectors[[2999, 0, 1500]])
    np.testing.assert_array_equal(snap.vector_file()[1000:1100], vectors[1000:1100])


def test_a_crash_mid_write_leaves_no_snapshot_that_reads_use(table, tmp_path, monkeypatch):
    import os

    import featurestore.store.snapshot as snapshot_module

    _history(table)
    real = snapshot_module._snapshot_batches

    def crash_after_one_batch(*args):
        yield next(real(*args))
        raise KeyboardInterrupt  # e.g. Ctrl-C while the snapshot is being written

    monkeypatch.setattr(snapshot_module, "_snapshot_batches", crash_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        table.latest()
    cache = next((tmp_path / "_cache").rglob("test-0000000000"))
    assert list(cache.iterdir()) == []
    killed = cache / ".v00000003-f2.dead.tmp"  # a killed writer leaves its temporary folder behind
    killed.mkdir()
    (killed / "rows.arrow").write_bytes(b"ARROW1 half")
    os.utime(killed, (0, 0))
    monkeypatch.setattr(snapshot_module, "_snapshot_batches", real)
    assert table.latest().ids.tolist() == table._latest_from_delta(None, as_of=3, with_vectors=True).ids.tolist()
    assert [p.name for p in cache.iterdir()] == ["v00000003-f2"]


def test_changes_since_reads_the_commits_after_a_version(table):
    _history(table)
    changes = table.changes_since(1)
    assert sorted(changes.removed) == ["e1", "e4"] and changes.version == 3
    assert changes.ids.tolist() == [f"n{i}" for i in range(10)] and changes.hashes.tolist() == [f"hn{i}" for i in range(10)]
    latest = table.latest()
    np.testing.assert_array_equal(changes.vectors, latest.vectors[[latest.ids.tolist().index(e) for e in changes.ids.tolist()]])
    assert len(table.changes_since(3).ids) == 0
    table.compact()
    assert table.changes_since(3) is None  # compaction rewrote old rows into a new file


def test_shards_that_create_a_table_at_once_all_land_exactly_once(tmp_path):
    """Four writers commit their first shard to a table none of them has created yet: the losers
    of the creation race retry the commit itself (no re-encode) and every row lands once."""
    import threading

    from featurestore.materialization.encoding import commit

    store = Store(tmp_path)
    barrier, errors = threading.Barrier(4), []

    def shard(k: int) -> None:
        ids = [f"{k}-{i}" for i in range(25)]
        part = rows(ids, np.full((25, DIM), k, np.float32))
        barrier.wait()
        try:
            commit(store.table("v", "test-0000000000"), part, meta(), f"run-{k}")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=shard, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    table = store.table("v", "test-0000000000")
    history, _ = table.scan(["entity_id"])
    assert history.num_rows == 100 and len(table.latest()) == 100
    assert commit(table, rows(["0-0"], np.zeros((1, DIM), np.float32)), meta(), "run-0") == table.version()  # a retried shard is a no-op


def test_prepared_lookups_answer_what_an_arrow_take_answers():
    """A warm frame (:meth:`FeatureFrame.prepare_lookups`) reads kept columns from per-column
    value arrays; for every column type a view keeps, the values are Arrow's own, and row -1 is {}."""
    from featurestore.store import FeatureFrame

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    columns = pa.table({
        "label": pa.array(["spam", None, "ham", "ham"]),
        "count": pa.array([1, 2, 3, 4], pa.int64()),
        "maybe": pa.array([1, None, 3, None], pa.int32()),
        "score": pa.array([0.5, float("nan"), -1.0, 2.0]),
        "flag": pa.array([True, False, True, False]),
        "seen": pa.array([when, None, when, when], TIMESTAMP),
        "tags": pa.array([[1], [], None, [2, 3]], pa.list_(pa.int64())),
    })
    frames = [FeatureFrame(np.array(list("abcd"), dtype=object), np.zeros((4, DIM), np.float32), columns, 0, "test-0000000000") for _ in range(2)]
    frames[1].prepare_lookups()
    wanted = np.array([3, -1, 0, 1, 1, 2], np.int64)
    expected = columns.take([3, 0, 0, 1, 1, 2]).to_pylist()
    expected[1] = {}
    for got in (frames[0].kept(wanted), frames[1].kept(wanted)):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert list(a) == list(b)
            for key in a:
                nan = isinstance(b[key], float) and np.isnan(b[key])
                assert (np.isnan(a[key]) if nan else a[key] == b[key]) and type(a[key]) is type(b[key]), (key, a[key], b[key])
    assert frames[1].rows_of(["d", "nope", "a"]).tolist() == [3, -1, 0]
