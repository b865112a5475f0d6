"""export: plain Parquet + .npy read back with pyarrow/numpy; drift between table versions."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from featurestore import TextSource, materialize
from featurestore.drift import compare, embedding_drift
from featurestore.store import Store
from tests.conftest import assert_user_error, snapshot


@pytest.fixture
def two_versions(tmp_path, sms_file, word2vec):
    """View 'sms' (word2vec): 40 messages at version 0, then 20 changed ones committed after."""
    store = tmp_path / "store"
    path = sms_file(40)
    source = TextSource(str(path), format="sms", id_col="@line", keep=("label",))
    materialize(source, "sms", "word2vec", store=store)
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join([f"{l} free prize call now" if i < 20 else l for i, l in enumerate(lines)]) + "\n", encoding="utf-8")
    materialize(source, "sms", "word2vec", store=store)
    return store


def test_export_reads_back_with_numpy_and_pyarrow(two_versions, tmp_path, cli):
    out = tmp_path / "out"
    code, printed, err = cli("export", "--view", "sms", "--out", out, "--rows-per-file", "15", "--store", two_versions, "--json")
    assert code == 0, err
    manifest = json.loads(printed)
    frame = Store(two_versions).resolve_table("sms").latest(["label"])
    assert manifest["rows"] == 40 and manifest["files"] == ["0000", "0001", "0002"]
    vectors = np.concatenate([np.load(out / "emb" / f"{f}.npy") for f in manifest["files"]])
    meta = pq.read_table(out / "metadata").to_pandas()
    np.testing.assert_array_equal(vectors, frame.vectors)
    assert meta["entity_id"].tolist() == frame.ids.tolist() and meta["label"].tolist() == frame.columns.column("label").to_pylist()
    flat = pq.read_table(out / "parquet")
    np.testing.assert_array_equal(np.array(flat.column("embedding").to_pylist(), np.float32), frame.vectors)
    assert json.loads((out / "export.json").read_text()) == manifest


def test_export_as_of_a_version_and_refusals(two_versions, tmp_path, cli):
    out = tmp_path / "old"
    code, _, err = cli("export", "--view", "sms", "--out", out, "--as-of", "0", "--store", two_versions)
    assert code == 0, err
    old = Store(two_versions).resolve_table("sms").latest(["label"], as_of=0)
    np.testing.assert_array_equal(np.load(out / "emb" / "0000.npy"), old.vectors)
    before = snapshot(out)
    assert_user_error(cli("export", "--view", "sms", "--out", out, "--store", two_versions), "already exists and is not an empty folder")
    assert snapshot(out) == before
    assert_user_error(cli("export", "--view", "nope", "--out", tmp_path / "x", "--store", two_versions), "nope")
    assert not (tmp_path / "x").exists()


def test_drift_sees_the_changed_texts_and_not_an_unchanged_copy(two_versions, cli):
    result = embedding_drift("sms", store=two_versions)
    assert (result["base_version"], result["current_version"]) == (0, result["current_version"]) and result["current_version"] >= 1
    assert result["mean_shift_relative_l2"] > 0.01 and result["rows"] == [40, 40]
    same = embedding_drift("sms", store=two_versions, base=0, current=0)
    assert same["mean_shift_relative_l2"] == 0 and same["norm_ks"] == 0 and not same["alert"]
    code, out, _ = cli("drift", "--view", "sms", "--alert-level", "0.001", "--store", two_versions, "--json")
    assert code == 0 and json.loads(out)["alert"] is True
    assert_user_error(cli("drift", "--view", "sms", "--base", "9", "--store", two_versions), "base version 9 of view 'sms' does not exist")


def test_compare_on_shifted_vectors():
    rng = np.random.default_rng(0)
    a = rng.normal(1.0, 0.1, (500, 8)).astype(np.float32)
    assert not compare(a, a.copy())["alert"]
    shifted = compare(a, a * 1.5)
    assert shifted["alert"] and shifted["norm_ks"] > 0.9


def test_info_shows_drift_on_request(two_versions, cli, monkeypatch):
    code, out, err = cli("info", "--drift", "--store", two_versions, "--json")
    assert code == 0, err
    [table] = json.loads(out)["tables"]
    assert table["drift"]["mean_shift_relative_l2"] > 0.01
    before = snapshot(two_versions)
    monkeypatch.setenv("COLUMNS", "200")  # a terminal wide enough that no cell folds
    code, out, _ = cli("info", "--drift", "--store", two_versions)
    assert code == 0 and "shift" in out, out
    assert snapshot(two_versions) == before  # read-only
