"""Damaged or foreign files in a model folder, their sha256 rewritten so that only the content is
wrong: one line naming the model, the file and what to do (exit 2), never a traceback."""

from __future__ import annotations

import io
import re
import json
import zipfile

import pytest

from models.base import TrainResult
from featurestore.errors import ModelError
from models.headfiles import torch_head
from models.registry import load_model, save_model
from tests.conftest import snapshot
from tests.security.tampering import plant, version_folder


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _without_schema(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if info.filename != "schema.json":
                target.writestr(info, source.read(info))
    return out.getvalue()


def _schema_not_json(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info, b"{not json" if info.filename == "schema.json" else source.read(info))
    return out.getvalue()


@pytest.mark.parametrize(
    "damage, says",
    [
        (lambda data: b"PK\x03\x04 this is not a zip file" * 40, "head.skops is damaged or not a skops archive (File is not a zip file)"),
        (_truncated, "head.skops is damaged or not a skops archive"),
        (_without_schema, "head.skops is damaged or not a skops archive (\"There is no item named 'schema.json' in the archive\")"),
        (_schema_not_json, "head.skops is damaged or not a skops archive (Expecting property name"),
    ],
    ids=["not-a-zip", "truncated", "no-schema", "schema-not-json"],
)
def test_a_damaged_skops_head_is_one_line(model_store, cli, damage, says):
    folder = version_folder(model_store)
    plant(folder, "head.skops", damage((folder / "head.skops").read_bytes()))
    before = snapshot(model_store)
    code, out, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: model spam v1: {says}") and err.endswith("; retrain it\n")
    assert snapshot(model_store) == before


@pytest.mark.parametrize(
    "text, says",
    [
        ("{not json", "manifest.json cannot be read (Expecting property name"),
        ("[1, 2]", "manifest.json is not a model manifest"),
        ('{"files": [], "head": {}}', "manifest.json is not a model manifest"),
        ("[" * 100_000, "manifest.json cannot be read ("),
    ],
    ids=["not-json", "a-list", "files-not-an-object", "deeply-nested"],
)
def test_a_damaged_manifest_is_one_line(model_store, cli, text, says):
    (version_folder(model_store) / "manifest.json").write_text(text)
    before = snapshot(model_store)
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: model spam v1: {says}") and err.endswith("; retrain it\n")
    assert snapshot(model_store) == before


def test_manifest_encoders_that_are_not_records_are_one_line(model_store, cli):
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoders"] = ["word2vec"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err == "featurestore: error: model spam v1: manifest.json's encoders are not encoder records; retrain it\n"


@torch_head
class _TinyHead:
    """The smallest torch head the registry saves: one weight matrix and its label names."""

    def __init__(self, weight, classes):
        self.weight, self.classes = weight, classes

    def state_tensors(self):
        return {"weight": self.weight}

    def config(self):
        return {"classes": self.classes}

    @classmethod
    def from_state(cls, tensors, config):
        if set(tensors) != {"weight"}:
            raise KeyError(f"tensors {sorted(tensors)}")
        return cls(tensors["weight"], config["classes"])


@pytest.fixture
def torch_model(model_store):
    torch = pytest.importorskip("torch")
    spam = load_model("spam", store=model_store)
    head = _TinyHead(torch.ones(2, 3), ["ham", "spam"])
    saved = save_model("tiny", TrainResult("classify", head, {}, {}, spam.training, spam.manifest["encoders"]), store=model_store)
    assert load_model("tiny", store=model_store).head.classes == ["ham", "spam"]
    return saved.path


@pytest.mark.parametrize(
    "file, damage, says",
    [
        ("head.safetensors", _truncated, "head.safetensors is damaged or not a safetensors file"),
        ("head.safetensors", lambda data: b"\xff" * 64, "head.safetensors is damaged or not a safetensors file"),
        ("head.json", lambda data: b"{oops", "head.json cannot be read"),
        ("head.json", lambda data: b"{}", "head.safetensors and head.json do not make a _TinyHead ('classes')"),
    ],
    ids=["truncated-tensors", "foreign-tensors", "config-not-json", "config-missing-keys"],
)
def test_a_damaged_torch_head_is_one_line(model_store, torch_model, cli, file, damage, says):
    plant(torch_model, file, damage((torch_model / file).read_bytes()))
    before = snapshot(model_store)
    with pytest.raises(ModelError, match="^model tiny v1: " + re.escape(says)):
        load_model("tiny", store=model_store)
    code, _, err = cli("predict", "tiny", "--store", model_store, "hello")
    assert code == 2 and err.startswith(f"featurestore: error: model tiny v1: {says}") and err.count("\n") == 1
    assert snapshot(model_store) == before


@pytest.mark.parametrize(
    "text, says",
    [("{oops", "cannot be read (Expecting property name"), ("[1, 2]", "manifest.json or report.json is not a JSON object")],
    ids=["not-json", "a-list"],
)
def test_the_report_page_names_a_damaged_report_json_and_still_renders(model_store, cli, tmp_path, text, says):
    """The report is a page about the whole store: a damaged model is a line on it, not a failure."""
    (version_folder(model_store) / "report.json").write_text(text)
    before = snapshot(model_store)
    out = tmp_path / "report.html"
    code, _, err = cli("report", "--store", model_store, "--out", out, "--sample", "20")
    assert code == 0, err
    page = out.read_text(encoding="utf-8")
    assert says in page and "retrain it" in page
    assert snapshot(model_store) == before


def test_listing_models_names_a_damaged_manifest_and_lists_the_others(model_store, cli):
    (version_folder(model_store, version=2)).mkdir()
    (version_folder(model_store, version=2) / "manifest.json").write_text('{"files": {}, "head": {}, "metrics": [1], "encoders": 3}')
    (version_folder(model_store, version=3)).mkdir()
    (version_folder(model_store, version=3) / "manifest.json").write_text("[]")
    code, out, err = cli("models", "--store", model_store, "--json")
    assert code == 0, err
    rows = {r["version"]: r for r in json.loads(out)}
    assert rows[1]["task"] == "spam" and rows[2]["metrics"] == {} and rows[2]["encoders"] == []
    assert rows[3]["error"] == "model spam v3: manifest.json is not a model manifest (it needs objects 'files' and 'head'); retrain it"
    assert cli("models", "--store", model_store)[0] == 0
