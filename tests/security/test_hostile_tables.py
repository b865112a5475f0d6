"""A feature table from an untrusted source or damaged on disk: its Delta log cannot make a read
leave the table folder, damaged data files and logs are one line naming the file and what to do
(exit 2, store unchanged), and a damaged or linked snapshot only costs the slower read."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from featurestore.store import Store, TableMeta
from featurestore.store.snapshot import read_snapshot
from tests.conftest import snapshot
from tests.featurestore.index.test_index import _synthetic_rows, clustered

META = TableMeta(view="synth", encoder_id="synth-1", encoder_name="synth", encoder_spec={}, dim=16, metric="cosine", modality="text")
RESTORE = "Restore the table from a copy, or remove it and materialize the view again"


@pytest.fixture(scope="module")
def _two_commits(tmp_path_factory):
    root = tmp_path_factory.mktemp("tables") / "store"
    table = Store(root).table("synth", META.encoder_id)
    x = clustered(300, 16, seed=9)
    table.append(_synthetic_rows([f"e{i}" for i in range(200)], x[:200]), META)
    table.append(_synthetic_rows([f"e{i}" for i in range(200, 300)], x[200:]), META)
    return root


@pytest.fixture
def store_root(_two_commits, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(_two_commits, root, symlinks=True)
    return root


def _table_dir(root):
    return root / "views" / "synth" / "synth-1"


def _second_add(root) -> tuple[object, list[dict]]:
    log = _table_dir(root) / "_delta_log" / "00000000000000000001.json"
    return log, [json.loads(line) for line in log.read_text().splitlines()]


def _run(cli, root, *args):
    before = snapshot(root)
    code, out, err = cli(*args, "--store", root)
    assert snapshot(root) == before
    return code, out, err


@pytest.mark.parametrize("command", [("index", "build", "--view", "synth"), ("export", "--view", "synth")])
@pytest.mark.parametrize("where", ["../../../../outside.parquet", "link"])
def test_a_delta_log_cannot_make_a_read_leave_the_table(store_root, cli, tmp_path, command, where):
    """The named file is a valid data file of the table (moved out): only its place is wrong."""
    log, actions = _second_add(store_root)
    add = next(a["add"] for a in actions if "add" in a)
    outside = tmp_path / "outside.parquet"
    shutil.move(_table_dir(store_root) / add["path"], outside)
    if where == "link":
        os.symlink(outside, _table_dir(store_root) / add["path"])
    else:
        add["path"] = where
        log.write_text("".join(json.dumps(a) + "\n" for a in actions))
    if command[0] == "export":
        command = (*command, "--out", str(tmp_path / "export"))
    code, _, err = _run(cli, store_root, *command)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: {_table_dir(store_root)}: its Delta log names the data file ")
    assert err.endswith(f"which lies outside the table; it is not read. {RESTORE}\n")
    assert not (tmp_path / "export").exists()


_DAMAGES = {
    "garbage": lambda p: p.write_bytes(b"garbage"),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[:-40]),
    "missing": lambda p: p.unlink(),
}
_BUILD = ("index", "build", "--view", "synth")


@pytest.mark.parametrize(
    "damage, command",
    [("garbage", _BUILD), ("truncated", _BUILD), ("missing", _BUILD), ("garbage", ("info",)),
     ("truncated", ("search", "--view", "synth", "--id", "e3"))],
    ids=["garbage-build", "truncated-build", "missing-build", "garbage-info", "truncated-search"],
)
def test_a_damaged_data_file_is_one_line_naming_it(store_root, cli, damage, command):
    if command[0] == "search":  # an index over the good table first: search reads the table for the hits' columns
        assert cli("index", "build", "--view", "synth", "--store", store_root)[0] == 0
        shutil.rmtree(store_root / "_cache")
    data = sorted(_table_dir(store_root).glob("*.parquet"))[0]
    _DAMAGES[damage](data)
    code, out, err = _run(cli, store_root, *command)
    if command == ("info",) and code == 0:  # info reads the log only: it may not notice
        assert "synth" in out
        return
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: the data file {data} cannot be read as this table's Parquet (")
    assert err.endswith(f"{RESTORE}\n")


@pytest.mark.parametrize("text", ["{garbage", '{"add": {"path": 5}}', "\x00\x01\x02"], ids=["not-json", "wrong-action", "binary"])
def test_a_damaged_delta_log_is_one_line(store_root, cli, text):
    log, _ = _second_add(store_root)
    log.write_text(text)
    code, _, err = _run(cli, store_root, "index", "build", "--view", "synth")
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"featurestore: error: cannot load {_table_dir(store_root)}: ")
    assert "<unknown>" not in err and "clone3" not in err  # deltalake's backtrace is not the message
    assert err.endswith(f"if its _delta_log is damaged: {RESTORE.lower()}\n")


def _cached(root):
    table = Store(root).table("synth", META.encoder_id)
    frame = table.latest()
    [folder] = (root / "_cache" / "synth" / "synth-1").iterdir()
    return table, frame, folder


@pytest.mark.parametrize("file", ["rows.arrow", "vectors.npy"])
@pytest.mark.parametrize("damage", ["truncated", "garbage", "pickle"])
def test_a_damaged_snapshot_is_read_again_from_the_table_and_rewritten(store_root, file, damage):
    table, frame, folder = _cached(store_root)
    good_ids, good_vectors = frame.ids.tolist(), np.array(frame.vectors)  # copies: the frame maps the files
    path, data = folder / file, (folder / file).read_bytes()
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = data[:64] + os.urandom(len(data) - 64)
    else:  # a .npy that np.load would unpickle if it were told to
        np.save(folder / "evil.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        data = (folder / "evil.npy").read_bytes()
        (folder / "evil.npy").unlink()
    path.unlink()  # a new file: truncating a mapped one in place would fault this process's own frame
    path.write_bytes(data)
    if file == "rows.arrow" or damage != "garbage":  # random floats after a valid header still read as floats
        assert read_snapshot(folder, 16) is None
        again = table.latest()
        assert again.ids.tolist() == good_ids and np.array_equal(again.vectors, good_vectors)
        assert read_snapshot(folder, 16) is not None  # written again, whole


def test_a_snapshot_folder_reached_through_a_link_is_neither_read_nor_written(store_root, tmp_path):
    _, frame, folder = _cached(store_root)
    good_ids = frame.ids.tolist()
    encoder_folder = folder.parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "v-precious").mkdir()  # what a snapshot write deletes beside itself: entries named v*
    shutil.rmtree(encoder_folder)
    os.symlink(elsewhere, encoder_folder)
    again = Store(store_root).table("synth", META.encoder_id).latest()
    assert again.ids.tolist() == good_ids
    assert [p.name for p in elsewhere.iterdir()] == ["v-precious"]
