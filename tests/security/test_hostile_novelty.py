"""A crafted or damaged training-distance description (``novelty.safetensors`` and its manifest
entry) in a model folder: one line naming the model and the file (exit 2), no code run, the store
unchanged. The sha256 in the manifest is rewritten each time, as an attacker would."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import snapshot
from tests.security.tampering import plant, version_folder

FILE = "novelty.safetensors"


class _Marker:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def _tensors(**arrays: np.ndarray) -> bytes:
    from safetensors.numpy import save

    return save(arrays)


def _dim(folder: Path) -> int:
    return json.loads((folder / "manifest.json").read_text())["novelty"]["dim"]


DAMAGED = "is damaged or not a safetensors file"
NOT_ROWS = "does not hold the training rows the manifest describes"
FILES = {
    "not-safetensors": (lambda data, dim, marker: b"\x00" * 64, DAMAGED),
    "truncated": (lambda data, dim, marker: data[: len(data) // 2], DAMAGED),
    "header-length-past-the-end": (lambda data, dim, marker: struct.pack("<Q", 1 << 40) + b"{}", DAMAGED),
    "a-pickle": (lambda data, dim, marker: pickle.dumps(_Marker(marker)), DAMAGED),
    "float64-rows": (lambda data, dim, marker: _tensors(rows=np.zeros((3, dim))), NOT_ROWS),
    "another-width": (lambda data, dim, marker: _tensors(rows=np.zeros((3, dim + 1), np.float32)), NOT_ROWS),
    "another-tensor-name": (lambda data, dim, marker: _tensors(exec=np.zeros((3, dim), np.float32)), NOT_ROWS),
    "not-finite": (lambda data, dim, marker: _tensors(rows=np.full((3, dim), np.nan, np.float32)), "holds values that are not finite numbers"),
}


@pytest.mark.parametrize("kind", sorted(FILES))
def test_a_damaged_or_crafted_novelty_file_is_one_line_and_runs_nothing(model_store, cli, tmp_path, kind):
    damage, says = FILES[kind]
    folder = version_folder(model_store)
    marker = tmp_path / "marker"
    plant(folder, FILE, damage((folder / FILE).read_bytes(), _dim(folder), marker))
    before = snapshot(model_store)
    code, out, err = cli("predict", "spam", "--store", model_store, "free entry, call now")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: model spam v1: {FILE} {says}") and err.endswith("; retrain it\n")
    assert not marker.exists()
    assert snapshot(model_store) == before


ENTRIES = {
    "threshold-a-string": lambda entry: {**entry, "threshold": "0.5"},
    "threshold-nan": lambda entry: {**entry, "threshold": float("nan")},
    "threshold-true": lambda entry: {**entry, "threshold": True},
    "a-list": lambda entry: [entry],
    "another-file": lambda entry: {**entry, "file": "../../outside.safetensors"},
    "quantiles-not-an-object": lambda entry: {**entry, "quantiles": 3},
    "training-rows-a-string": lambda entry: {**entry, "training_rows": "many"},
    "seed-missing": lambda entry: {k: v for k, v in entry.items() if k != "seed"},
}


@pytest.mark.parametrize("kind", sorted(ENTRIES))
def test_a_crafted_novelty_entry_in_the_manifest_is_one_line(model_store, cli, kind):
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["novelty"] = ENTRIES[kind](manifest["novelty"])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(model_store)
    code, out, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("featurestore: error: model spam v1: manifest.json's novelty entry is not a training-distance record")
    assert snapshot(model_store) == before


def test_a_novelty_entry_whose_file_the_manifest_does_not_list_is_one_line(model_store, cli):
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["files"][FILE]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / FILE).unlink()
    code, out, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and out == "" and err == (
        f"featurestore: error: model spam v1: manifest.json's novelty entry names {FILE}, which the manifest does not list; retrain it\n"
    )


def test_the_untouched_novelty_file_loads_with_the_training_rows(model_store):
    from models.registry import load_model

    model = load_model("spam", store=model_store)
    assert model.novelty.rows.shape == (200, _dim(version_folder(model_store)))
    np.testing.assert_allclose(np.linalg.norm(model.novelty.rows, axis=1)[np.linalg.norm(model.novelty.rows, axis=1) > 0], 1, atol=1e-5)
