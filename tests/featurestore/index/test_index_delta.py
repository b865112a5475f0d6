"""Index updates write a delta beside the index file: searches stay exact where the index is,
the index file is not rewritten until the delta is folded in."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from featurestore.index import VectorIndex, build_index, search, update_index
from featurestore.store import Store, TableMeta
from tests.featurestore.index.test_index import _synthetic_rows, clustered

META = TableMeta(view="synth", encoder_id="synth-1", encoder_name="synth", encoder_spec={}, dim=16, metric="cosine", modality="text")


def rows(ids: list[str], vectors: np.ndarray, *, deleted: bool = False) -> pa.Table:
    table = _synthetic_rows(ids, vectors, deleted=deleted)
    return table.append_column("group", pa.array([int(e[1:]) % 2 for e in ids], pa.int64()))


def exact(live: dict[str, np.ndarray], query: np.ndarray, k: int, group: int | None = None) -> list[str]:
    ids = [e for e in sorted(live) if group is None or int(e[1:]) % 2 == group]
    x = np.stack([live[e] for e in ids])
    scores = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def found(hits: list[dict]) -> list[str]:
    return [h["entity_id"] for h in hits]


def named(folder, kind: str):
    """The file of ``kind`` (index, ids, delta) that index.json names, or None."""
    name = json.loads((folder / "index.json").read_text())["files"].get(kind)
    return folder / name if name else None


def test_an_update_writes_a_delta_and_searches_stay_exact(tmp_path):
    store = Store(tmp_path)
    table = store.table("synth", META.encoder_id)
    x = clustered(1_200, 16, seed=3)
    live = {f"e{i}": x[i] for i in range(1_000)}
    table.append(rows(list(live), x[:1_000]), META)
    build_index("synth", store=store, index_type="flat")
    folder = tmp_path / "indexes" / "synth" / "synth-1"
    before = named(folder, "index").stat()

    changed = [f"e{i}" for i in range(5)]
    new = [f"e{i}" for i in range(1_000, 1_030)]
    table.append(rows(new + changed, np.vstack([x[1_000:1_030], x[1_100:1_105]])), META)
    table.append(rows(["e5", "e6"], np.zeros((2, 16), np.float32), deleted=True), META)
    live.update({e: x[1_100 + i] for i, e in enumerate(changed)}, **{e: x[int(e[1:])] for e in new})
    del live["e5"], live["e6"]
    result = update_index("synth", store=store)
    assert (result.rebuilt, result.added, result.removed, result.info.rows) == (False, 35, 7, 1_028)
    after = named(folder, "index").stat()
    assert (after.st_mtime_ns, after.st_size, after.st_ino) == (before.st_mtime_ns, before.st_size, before.st_ino), "the index file was rewritten"
    assert named(folder, "delta").is_file()

    queries = np.vstack([x[1_000:1_010], x[0:7], x[1_100:1_105]])  # new rows, old vectors of changed/deleted rows, changed rows
    for query in queries:
        [hits] = search("synth", store=store, vectors=query[None], k=10)
        assert found(hits) == exact(live, query, 10)
        [odd] = search("synth", store=store, vectors=query[None], k=10, where="\"group\" = 1", exact_below=0)  # the index's subset search
        assert found(odd) == exact(live, query, 10, group=1)

    reloaded = VectorIndex.load(folder)
    assert len(reloaded.delta.added) == 35 and reloaded.delta.removed.tolist() == [0, 1, 2, 3, 4, 5, 6]  # tombstones over the file
    scores, ids = reloaded.search(queries, 10)
    assert [reloaded.entity_at(row) for row in ids] == [exact(live, q, 10) for q in queries]


def test_a_delta_past_its_share_is_folded_into_the_index_file(tmp_path, monkeypatch):
    import importlib

    index_search = importlib.import_module("featurestore.index.lifecycle")  # the package re-exports a function of that name
    store = Store(tmp_path)
    table = store.table("synth", META.encoder_id)
    x = clustered(2_200, 16, seed=4)
    table.append(rows([f"e{i}" for i in range(2_000)], x[:2_000]), META)
    build_index("synth", store=store, index_type="ivf")  # no memory budget: loaded memory-mapped, read-only
    folder = tmp_path / "indexes" / "synth" / "synth-1"
    written = named(folder, "index")

    table.append(rows([f"e{i}" for i in range(2_000, 2_040)], x[2_000:2_040]), META)  # 2% of the rows: a delta
    assert update_index("synth", store=store).info.rows == 2_040
    assert named(folder, "delta").is_file() and named(folder, "index") == written

    monkeypatch.setattr(index_search, "FOLD_SHARE", 0.03)
    table.append(rows([f"e{i}" for i in range(2_040, 2_100)] + ["e7"], np.vstack([x[2_040:2_100], x[2_150:2_151]])), META)
    result = update_index("synth", store=store)
    assert (result.rebuilt, result.info.rows) == (False, 2_100)
    assert named(folder, "delta") is None and named(folder, "index") != written
    index = VectorIndex.load(folder)
    assert index.index.ntotal == 2_100 and not len(index.delta)
    for i in (2_010, 2_090):
        [hits] = search("synth", store=store, vectors=x[i : i + 1], k=1)
        assert hits[0]["entity_id"] == f"e{i}"
    [hits] = search("synth", store=store, vectors=x[7:8], k=3)
    assert hits[0]["entity_id"] != "e7" or hits[0]["score"] < 0.999, "e7's old vector is gone"


def test_a_save_killed_before_index_json_leaves_the_previous_index_whole(tmp_path, monkeypatch):
    """index.json is the commit point: new files under new names first, so a save that dies
    before it leaves the previous files, and what index.json names, in force."""
    import featurestore.index.vector_index as vector_index

    store = Store(tmp_path)
    table = store.table("synth", META.encoder_id)
    x = clustered(600, 16, seed=5)
    table.append(rows([f"e{i}" for i in range(500)], x[:500]), META)
    build_index("synth", store=store, index_type="flat")
    folder = tmp_path / "indexes" / "synth" / "synth-1"
    before = json.loads((folder / "index.json").read_text())
    table.append(rows([f"e{i}" for i in range(500, 520)] + ["e3"], np.vstack([x[500:520], x[590:591]])), META)

    def killed(self, folder):
        raise KeyboardInterrupt("killed before index.json")

    monkeypatch.setattr(vector_index.VectorIndex, "save_info", killed)
    try:
        update_index("synth", store=store)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert json.loads((folder / "index.json").read_text()) == before
    index = VectorIndex.load(folder)
    assert len(index) == 500 and not len(index.delta)
    result = update_index("synth", store=store)  # the next update starts from the committed state
    assert (result.added, result.removed, result.info.rows) == (21, 1, 520)
    [hits] = search("synth", store=store, vectors=x[590:591], k=1)
    assert hits[0]["entity_id"] == "e3"
    named_now = json.loads((folder / "index.json").read_text())["files"].values()
    assert {p.name for p in folder.iterdir()} <= {"index.json", *named_now, *before["files"].values()}, "the killed save's files were not cleared"


def test_an_ivfpq_index_builds_takes_a_delta_and_rebuilds_instead_of_folding(tmp_path, monkeypatch):
    """IndexRefine numbers its vectors itself and removes none: the build adds them in order,
    searches filter tombstones through IndexRefineSearchParameters, and a delta past its share
    means a rebuild."""
    import importlib

    store = Store(tmp_path)
    table = store.table("synth", META.encoder_id)
    x = clustered(6_200, 16, seed=6)
    table.append(rows([f"e{i}" for i in range(6_000)], x[:6_000]), META)
    built = build_index("synth", store=store, index_type="ivfpq", target_recall=0.9).info
    assert "Refine" in built.factory
    table.append(rows([f"e{i}" for i in range(6_000, 6_020)] + ["e5"], np.vstack([x[6_000:6_020], x[6_100:6_101]])), META)
    result = update_index("synth", store=store)
    assert (result.rebuilt, result.added, result.removed, result.info.rows) == (False, 21, 1, 6_020)
    [hits] = search("synth", store=store, vectors=x[6_010:6_011], k=3)
    assert hits[0]["entity_id"] == "e6010"
    [hits] = search("synth", store=store, vectors=x[5:6], k=3, where="\"group\" = 1", exact_below=0)
    assert hits and all(int(h["entity_id"][1:]) % 2 == 1 for h in hits)
    assert not (hits[0]["entity_id"] == "e5" and hits[0]["score"] > 0.999), "e5's replaced vector is tombstoned"
    monkeypatch.setattr(importlib.import_module("featurestore.index.lifecycle"), "FOLD_SHARE", 0.001)
    table.append(rows([f"e{i}" for i in range(6_020, 6_030)], x[6_020:6_030]), META)
    assert update_index("synth", store=store).rebuilt


def test_a_damaged_delta_file_is_a_one_line_error_that_changes_nothing(tmp_path, cli):
    from tests.conftest import snapshot

    store = Store(tmp_path)
    table = store.table("synth", META.encoder_id)
    x = clustered(600, 16, seed=7)
    table.append(rows([f"e{i}" for i in range(500)], x[:500]), META)
    build_index("synth", store=store, index_type="flat")
    table.append(rows([f"e{i}" for i in range(500, 510)], x[500:510]), META)
    update_index("synth", store=store)
    folder = tmp_path / "indexes" / "synth" / "synth-1"
    named(folder, "delta").write_bytes(b"not parquet")
    before = snapshot(tmp_path)
    code, out, err = cli("search", "--view", "synth", "--id", "e3", "--store", tmp_path)
    assert code == 2 and err.startswith("featurestore: error: the update file ") and "is damaged" in err
    assert "rebuild it with `featurestore index build`" in err and err.count("\n") == 1
    assert snapshot(tmp_path) == before
