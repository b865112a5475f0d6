"""Fine-tuning the last K encoder layers with a head, beside the frozen head, on real data slices."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from featurestore import settings
from featurestore.errors import EncoderError, FineTuneError
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from models.finetune import finetune, predict
from models.registry import load_model, model_encoders, save_model
from tests.conftest import GLOVE, SMS, need

pytest.importorskip("torch", reason="torch is part of the image and text extras")

IMAGES = settings.data_dir() / "images" / "hymenoptera_train"
SMALL = {"n_splits": 2, "max_epochs": 2}


@pytest.fixture(scope="module")
def image_store(tmp_path_factory) -> Path:
    """30 ants and 30 bees (links to the shared photos) in an efficientnet-lite0 view ``bees``."""
    need(IMAGES)
    from featurestore.sources.images import ImageSource

    root = tmp_path_factory.mktemp("finetune")
    for label in ("ants", "bees"):
        (root / "photos" / label).mkdir(parents=True)
        for photo in sorted((IMAGES / label).glob("*.jpg"))[:30]:
            (root / "photos" / label / photo.name).symlink_to(photo)
    materialize(ImageSource(str(root / "photos")), "bees", "efficientnet-lite0", store=root / "store", encoder_options={"device": "cpu"})
    return root / "store"


@pytest.fixture(scope="module")
def image_result(image_store):
    return finetune("bees", unfreeze_last=1, **SMALL, store=image_store)


def test_image_finetune_reports_frozen_and_finetuned_side_by_side_with_times(image_result):
    report = image_result.report
    assert report["unfreeze_last"] == 1 and report["rows"] == 60 and report["folds"] == 2
    for side in ("frozen", "finetuned"):
        assert 0.6 <= report[side]["accuracy"] <= 1.0, report[side]
        assert report[side]["train_seconds"] > 0 and np.sum(report[side]["confusion_matrix"]) == 60
    assert 0 < report["finetuned"]["cache_seconds"] < report["finetuned"]["train_seconds"]
    assert len(report["epochs"]["folds"]) == 2 and 1 <= report["epochs"]["final"] <= 2
    assert {"accuracy", "frozen_accuracy"} <= set(image_result.metrics)
    entry = image_result.encoders[0]
    assert image_result.task == "finetune" and entry["base_encoder_id"] == report["base_encoder_id"]
    assert entry["encoder_id"].startswith("efficientnet-lite0-ft-") and entry["encoder_id"] != entry["base_encoder_id"]


def test_two_runs_give_identical_metrics_and_tensors(image_store, image_result):
    again = finetune("bees", unfreeze_last=1, **SMALL, store=image_store)
    assert again.metrics == image_result.metrics
    first, second = image_result.head.state_tensors(), again.head.state_tensors()
    assert first.keys() == second.keys() and all(first[k].equal(second[k]) for k in first)


def test_saved_model_predicts_like_the_trained_one_and_refuses_the_frozen_path(image_store, image_result, tmp_path):
    root = tmp_path / "store"
    shutil.copytree(image_store, root)
    saved = save_model("bees-ft", image_result, store=root)
    loaded = load_model("bees-ft", saved.version, store=root)
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    paths = [str(IMAGES / "ants" / "0013035.jpg"), str(max((IMAGES / "bees").glob("*.jpg"))), str(not_an_image)]
    inputs = [{"id": i, "path": p} for i, p in enumerate(paths)]
    before, after = predict(saved, inputs), predict(loaded, inputs)
    assert before == after and before[2]["label"] is None and before[2]["error"]
    assert [o["label"] for o in before[:2]] == ["ants", "bees"]
    with pytest.raises(EncoderError, match="does not record how to rebuild encoder efficientnet-lite0-ft-"):
        model_encoders(loaded)  # a frozen head's predict would encode with the base weights: refused


@pytest.mark.parametrize("k", [0, 17, True])
def test_unfreeze_last_out_of_range_is_one_clear_line(image_store, k):
    with pytest.raises(FineTuneError, match=rf"^unfreeze_last must be an int from 1 to 16 \(the MBConv blocks of efficientnet-lite0\)\. Got {k!r} instead\.$"):
        finetune("bees", unfreeze_last=k, store=image_store)


def test_word2vec_view_has_nothing_to_finetune(tmp_path):
    need(SMS)
    need(GLOVE)
    source = tmp_path / "sms.txt"
    source.write_text("\n".join(SMS.read_text(encoding="utf-8").splitlines()[:20]) + "\n", encoding="utf-8")
    materialize(TextSource(str(source), format="sms", keep=("label",)), "sms", f"w2v:{GLOVE / 'glove.6B.50d.top5k.w2v.txt'}", store=tmp_path / "store")
    with pytest.raises(FineTuneError, match=r"^view 'sms' is encoded with w2v \(w2v-\w+\), which has no layers to fine-tune; "):
        finetune("sms", unfreeze_last=1, store=tmp_path / "store")


def test_minilm_finetune_on_200_messages_reads_texts_from_the_run_record(tmp_path, minilm):
    """No text column kept: the texts come from the source the run record names, checked by hash."""
    need(SMS)
    source = tmp_path / "SMSSpamCollection"
    source.write_text("\n".join(SMS.read_text(encoding="utf-8").splitlines()[:200]) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    materialize(TextSource(str(source), keep=("label",)), "sms", "minilm", store=store, encoder_options={"device": "cpu"})
    result = finetune("sms", unfreeze_last=1, split="text", positive="spam", class_weight="balanced", **SMALL, store=store)
    report = result.report
    assert {"f1", "roc_auc", "train_seconds"} <= set(report["finetuned"]) and {"f1", "train_seconds"} <= set(report["frozen"])
    assert report["finetuned"]["roc_auc"] >= 0.8 and result.encoders[0]["encoder_id"].startswith("minilm-ft-")
    loaded = load_model("spam-ft", save_model("spam-ft", result, store=store).version, store=store)
    prize = "WINNER!! Claim your FREE prize now, txt WIN to 80082"
    out = predict(loaded, [{"id": "a", "text": prize}, {"id": "b", "text": " "}])
    assert out[1]["error"] == "empty text"
    expected = result.head.predict_proba(result.head.activations([prize])[0])[0]
    assert out[0]["label"] == result.head.classes_[expected.argmax()] and out[0]["score"] == pytest.approx(expected.max())
    with pytest.raises(FineTuneError, match=r"^unfreeze_last must be an int from 1 to 6 \(the transformer layers of minilm\)\. Got 7 instead\.$"):
        finetune("sms", unfreeze_last=7, store=store)


def test_a_tta_view_is_refused_the_network_reads_one_centre_crop(tmp_path):
    need(IMAGES)
    from featurestore.sources.images import ImageSource

    for label in ("ants", "bees"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for photo in sorted((IMAGES / label).glob("*.jpg"))[:2]:
            (tmp_path / "photos" / label / photo.name).symlink_to(photo)
    materialize(ImageSource(str(tmp_path / "photos")), "bees", "efficientnet-lite0", store=tmp_path / "store",
                encoder_options={"device": "cpu", "tta": "flip"})
    with pytest.raises(FineTuneError, match=r"^view 'bees' is encoded with test-time augmentation \(tta flip\); fine-tuning reads the centre crop"):
        finetune("bees", unfreeze_last=1, **SMALL, store=tmp_path / "store")


def test_the_report_shows_frozen_against_finetuned_with_their_training_times(image_store, image_result, tmp_path):
    pytest.importorskip("plotly", reason="the report extra (plotly) is not installed")
    from flows.report import write_report

    save_model("tuned-report", image_result, store=image_store)
    write_report(tmp_path / "r.html", store=image_store, projection="pca")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    frozen, tuned = image_result.report["frozen"], image_result.report["finetuned"]
    assert 'id="plot-finetune-tuned-report-1"' in text and 'id="plot-baselines-tuned-report-1"' in text
    assert f"{frozen['train_seconds']} s vs {tuned['train_seconds']} s to train" in text
    assert "fine-tuned (last 1 layers)" in text and "frozen encoder + logistic" in text
