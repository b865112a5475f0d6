"""The model registry with a real spam head on 300 SMS messages (word2vec features)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from featurestore.errors import EncoderError
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from featurestore.store import Store
from models import registry, spam
from models.base import TrainResult
from models.registry import (
    ModelError,
    list_models,
    load_model,
    model_encoders,
    needs_retrain,
    save_model,
)
from models.headfiles import torch_head
from tests.conftest import SMS, need


@pytest.fixture(scope="module")
def store(tmp_path_factory, word2vec) -> Path:
    need(SMS)
    root = tmp_path_factory.mktemp("registry")
    path = root / "sms.txt"
    path.write_text("\n".join(SMS.read_text(encoding="utf-8").splitlines()[:300]) + "\n", encoding="utf-8")
    materialize(TextSource(str(path), format="sms", id_col="@line", keep=("label", "text")), "sms", "word2vec", store=root / "store")
    return root / "store"


@pytest.fixture(scope="module")
def trained(store) -> TrainResult:
    return spam.train("sms", head="logistic", store=store)  # a head of the stored vectors alone: predict_proba of arrays


@pytest.fixture
def saved(store, trained, tmp_path):
    """A fresh copy of the store with the spam head saved as version 1 of ``spam``."""
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    return copy, save_model("spam", trained, store=copy)


def test_save_then_load_gives_the_same_predictions_and_versions_count_up(saved, trained):
    root, first = saved
    assert first.version == 1 and sorted(p.name for p in first.path.iterdir()) == ["head.skops", "manifest.json", "novelty.safetensors", "report.json"]
    second = save_model("spam", trained, store=root)
    assert second.version == 2 and not [p for p in (root / "models" / "spam").iterdir() if p.name.startswith(".")]
    loaded = load_model("spam", store=root)
    assert loaded.version == 2 and loaded.task == "spam"
    assert loaded.manifest["training_set"]["content_sha256"] == trained.training_manifest.content_sha256
    X = np.random.default_rng(0).normal(size=(5, 100)).astype(np.float32)
    np.testing.assert_array_equal(loaded.head.predict_proba(X), trained.head.predict_proba(X))
    rows = list_models(store=root)
    assert [(r["name"], r["version"], r["task"]) for r in rows] == [("spam", 1, "spam"), ("spam", 2, "spam")]
    assert rows[0]["metrics"]["f1"] == trained.metrics["f1"]


def test_predict_encodes_raw_text_with_the_models_own_encoder(saved):
    root, _ = saved
    out = spam.predict(load_model("spam", 1, store=root), [{"id": "x", "text": "Sorry, I'll call you later"}, {"id": "y", "text": " "}])
    assert out[0]["id"] == "x" and out[0]["label"] == "ham" and 0.5 <= out[0]["score"] <= 1
    assert out[1] == {"id": "y", "label": None, "score": None, "error": "empty text", "ood": None, "ood_distance": None}


@pytest.mark.parametrize("file", ["head.skops", "report.json"])
def test_a_file_modified_after_saving_is_refused(saved, file):
    root, model = saved
    with open(model.path / file, "ab") as fh:
        fh.write(b" ")
    with pytest.raises(ModelError, match=rf"^model spam v1: {file} was modified after it was saved \(sha256 mismatch\); retrain it$"):
        load_model("spam", store=root)


def test_training_twice_from_the_same_manifest_gives_identical_model_bytes(saved, store, trained):
    root, first = saved
    again = spam.train("sms", **{k: trained.params[k] for k in ("head", "C", "split", "n_splits", "seed")}, store=store)
    assert again.training_manifest == trained.training_manifest and again.metrics == trained.metrics
    second = save_model("spam", again, store=root)
    assert (second.path / "head.skops").read_bytes() == (first.path / "head.skops").read_bytes()


def test_a_head_of_a_type_the_registry_would_not_load_is_not_saved(saved, trained):
    root, _ = saved
    result = TrainResult("spam", Untrusted(), {}, {}, trained.training_manifest, trained.encoders)
    with pytest.raises(ModelError, match=r"^a (tests\.models\.)?test_registry\.Untrusted head holds types the registry does not load \('.*Untrusted'\); it is not saved"):
        save_model("evil", result, store=root)
    assert not list((root / "models" / "evil").iterdir())


def test_a_crash_while_saving_leaves_no_version(saved, trained, monkeypatch):
    root, _ = saved

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(registry, "_manifest", crash)
    with pytest.raises(OSError, match="disk full"):
        save_model("spam", trained, store=root)
    assert sorted(p.name for p in (root / "models" / "spam").iterdir()) == ["1"]


def test_encoders_that_are_missing_or_differ_are_refused(saved, tmp_path):
    root, model = saved
    manifest_path = model.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    assert [e.encoder_id for e in model_encoders(load_model("spam", store=root))] == [manifest["encoders"][0]["encoder_id"]]
    manifest["encoders"][0]["encoder_ref"] = f"w2v:{tmp_path / 'gone.bin'}"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EncoderError, match=r"^model spam v1 needs encoder 'w2v:.*gone.bin', which is not available here"):
        model_encoders(load_model("spam", store=root))
    manifest["encoders"][0]["encoder_ref"] = "word2vec"
    manifest["encoders"][0]["encoder_id"] = "word2vec-0000000000"
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(EncoderError, match=r"^model spam v1 expects encoder word2vec-0000000000, but 'word2vec' is word2vec-\w+ here; its weights or options differ"):
        spam.predict(load_model("spam", store=root), [{"id": 1, "text": "hello"}])


def test_torch_heads_round_trip_through_safetensors_and_unlisted_classes_are_refused(saved, trained):
    torch = pytest.importorskip("torch")
    root, _ = saved
    head = TinyTorchHead(torch.arange(6, dtype=torch.float32).reshape(2, 3), ["ham", "spam"])
    model = save_model("tiny", TrainResult("classify", head, {}, {}, trained.training_manifest, trained.encoders), store=root)
    assert sorted(os.listdir(model.path)) == ["head.json", "head.safetensors", "manifest.json", "report.json"]
    loaded = load_model("tiny", store=root)
    assert torch.equal(loaded.head.weight, head.weight) and loaded.head.classes == ["ham", "spam"]
    manifest = json.loads((model.path / "manifest.json").read_text())
    manifest["head"]["class"] = "os.system"
    (model.path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match=r"head class 'os.system' is not an allowed torch head; it is not loaded"):
        load_model("tiny", store=root)


class Untrusted:
    """Not a scikit-learn type: skops can write it, the registry must not load it."""


@torch_head
class TinyTorchHead:
    """The smallest head that follows the registry's torch contract."""

    def __init__(self, weight, classes):
        self.weight = weight
        self.classes = classes

    def state_tensors(self):
        return {"weight": self.weight}

    def config(self):
        return {"classes": self.classes}

    @classmethod
    def from_state(cls, tensors, config):
        return cls(tensors["weight"], config["classes"])


def test_listings_show_a_models_own_metrics_before_its_baselines():
    from models.registry import headline_metrics

    ranking = {"bm25_mrr@10": 0.51, "bm25_ndcg@10": 0.35, "dense_ndcg@10": 0.37, "mrr@10": 0.59, "ndcg@10": 0.41, "recall@100": 0.79}
    assert list(headline_metrics(ranking)) == ["ndcg@10", "mrr@10", "recall@100"]
    image = {"accuracy": 0.95, "macro_f1": 0.95, "majority_accuracy": 0.51, "recall_ants": 0.94, "rows": 245, "ok": True}
    assert headline_metrics(image, 4) == {"accuracy": 0.95, "macro_f1": 0.95, "recall_ants": 0.94, "rows": 245.0}


def test_needs_retrain_says_why_and_none_while_the_model_is_current(saved, cli):
    root, model = saved
    encoder_id = model.manifest["encoders"][0]["encoder_id"]
    recorded = model.manifest["metrics"]

    def reason(name: str = "spam", **changed) -> str | None:
        asked = {"task": "spam", "view": "sms", "encoder_id": encoder_id, "options": {"head": "logistic"}, **changed}
        return needs_retrain(name, store=root, **asked)

    assert reason() is None
    assert reason(options={}) is None  # an option the project file leaves out is not compared
    assert reason("other") == "not trained yet"
    assert reason(task="classify") == "v1 is a spam model; the project file says classify"
    assert reason(options={"head": "auto"}) == "option head is 'auto' in the project file; v1 was trained with 'logistic'"
    assert reason(view="texts") == "v1 was trained on view sms; the project file says texts"
    assert reason(encoder_id="minilm-0123abcd") == f"v1 was trained on {encoder_id}; the view's table is now minilm-0123abcd"

    trained_on = model.training.tables[0].version
    more = root.parent / "more.txt"  # new rows: the table moves on
    more.write_text("\n".join(SMS.read_text(encoding="utf-8").splitlines()[:340]) + "\n", encoding="utf-8")
    materialize(TextSource(str(more), format="sms", id_col="@line", keep=("label", "text")), "sms", "word2vec", store=root)
    now = Store(root).resolve_table("sms").version()
    assert now > trained_on and reason() == f"sms/{encoder_id} is at version {now}; v1 was trained on version {trained_on}"

    # evaluate without new data trains it again on the set its manifest names (300 rows), not on the 340 rows now
    code, out, err = cli("evaluate", "spam:1", "--store", root, "--json")
    assert code == 0, err
    check = json.loads(out)
    assert check["identical_metrics"] and check["identical_head"] and check["metrics"] == recorded, check

    manifest = json.loads((model.path / "manifest.json").read_text())
    manifest["training_set"]["tables"] = "sms"
    (model.path / "manifest.json").write_text(json.dumps(manifest))
    assert reason() == ("model spam v1: manifest.json's training_set cannot be read "
                        "(the training manifest's `tables` must be a list; got 'sms'); retrain it")
