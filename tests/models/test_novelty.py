"""The out-of-distribution warning for real: a spam head on 500 SMS messages (real MiniLM) keeps
its training rows and their leave-one-out distances; held-out SMS messages are in the training
data's range, Cranfield aerodynamics abstracts are not, and the command line says so. An image
head (real EfficientNet-Lite0) tells held-out photos from noise images."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurestore import settings
from models import novelty
from tests.conftest import need

TRAIN = 500
CRANFIELD = settings.data_dir() / "search" / "cranfield" / "cran.all.1400"
WARNING = re.compile(
    r"^featurestore: warning: (\d+) of (\d+) inputs are farther from the training data than 99% of the training rows are "
    r"from each other; the head's predictions may not hold for them\n$"
)


@pytest.fixture(scope="module")
def ood_store(tmp_path_factory, sms_lines, minilm) -> Path:
    """View 'sms' (minilm, the first 500 messages, label and text kept) with spam head 'spam' v1."""
    from featurestore import TextSource, materialize
    from models import spam
    from models.registry import save_model

    root = tmp_path_factory.mktemp("novelty")
    (root / "sms.txt").write_text("\n".join(sms_lines[:TRAIN]) + "\n", encoding="utf-8")
    store = root / "store"
    materialize(TextSource(str(root / "sms.txt"), format="sms", id_col="@line", keep=("label", "text")), "sms", "minilm",
                store=store, encoder_options={"device": "cpu"})
    save_model("spam", spam.train("sms", n_splits=2, store=store), store=store)
    return store


@pytest.fixture(scope="module")
def held_out_sms(sms_lines) -> list[str]:
    return [line.split("\t", 1)[1] for line in sms_lines[TRAIN:TRAIN + 100]]


@pytest.fixture(scope="module")
def abstracts() -> list[str]:
    """The first 30 Cranfield abstracts (their .W text, whitespace folded)."""
    need(CRANFIELD)
    documents = re.split(r"^\.I ", CRANFIELD.read_text(encoding="utf-8"), flags=re.M)[1:31]
    return [" ".join(doc.split("\n.W\n", 1)[1].split()) for doc in documents]


def _inputs(texts: list[str]) -> list[dict[str, str]]:
    return [{"id": str(i), "text": t} for i, t in enumerate(texts)]


def test_the_threshold_is_the_99th_percentile_of_the_training_rows_leave_one_out_distances(ood_store):
    from featurestore.training import training_set
    from models.registry import load_model

    model = load_model("spam", store=ood_store)
    record = model.manifest["novelty"]
    X = training_set("sms", store=ood_store, split="text").X
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    distance = 1 - unit @ unit.T
    np.fill_diagonal(distance, np.inf)  # each row to its nearest other row
    loo = distance.min(axis=1)
    assert record["rows"] == record["training_rows"] == TRAIN and record["dim"] == 384
    assert record["threshold"] == pytest.approx(np.percentile(loo, 99), abs=1e-5)
    assert record["quantiles"]["50"] == pytest.approx(np.percentile(loo, 50), abs=1e-5)
    assert record["quantiles"]["max"] == pytest.approx(loo.max(), abs=1e-5)
    np.testing.assert_allclose(model.novelty.rows, unit, atol=1e-6)  # the file holds the normalised training rows
    assert "novelty.safetensors" in model.manifest["files"]


def test_held_out_sms_is_within_the_training_range_and_cranfield_abstracts_are_not(ood_store, held_out_sms, abstracts):
    from models import tasks
    from models.registry import load_model

    model = load_model("spam", store=ood_store)
    sms = tasks.predict(model, _inputs(held_out_sms))
    cran = tasks.predict(model, _inputs(abstracts))
    assert all(isinstance(p["ood"], bool) and 0 <= p["ood_distance"] <= 2 for p in sms + cran)
    in_domain, out_of_domain = novelty.summary(sms, model.novelty), novelty.summary(cran, model.novelty)
    # measured: 1 of 100 held-out messages beyond the threshold, 29 of 30 abstracts
    assert in_domain["recorded"] and in_domain["inputs"] == 100 and in_domain["share"] <= 0.05 and in_domain["warning"] is None
    assert out_of_domain["share"] >= 0.8 and out_of_domain["beyond"] == sum(p["ood"] for p in cran)
    assert out_of_domain["warning"].startswith(f"{out_of_domain['beyond']} of 30 inputs are farther from the training data")
    assert np.median([p["ood_distance"] for p in cran]) > out_of_domain["threshold"] > np.median([p["ood_distance"] for p in sms])


def test_the_command_line_warns_on_stderr_for_abstracts_and_stays_quiet_for_sms(ood_store, held_out_sms, abstracts, cli, tmp_path):
    (tmp_path / "cran.txt").write_text("\n".join(abstracts) + "\n", encoding="utf-8")
    (tmp_path / "sms.txt").write_text("\n".join(held_out_sms[:20]) + "\n", encoding="utf-8")
    code, out, err = cli("predict", "spam", "--input", tmp_path / "cran.txt", "--store", ood_store, "--json")
    assert code == 0
    flags = [p["ood"] for p in json.loads(out)]
    warned = WARNING.match(err)
    assert warned and int(warned.group(1)) == sum(flags) >= 24 and warned.group(2) == "30"
    code, out, err = cli("predict", "spam", "--input", tmp_path / "sms.txt", "--store", ood_store)
    assert code == 0 and err == ""
    assert "ood_distance" in out and re.search(r"\b\d of 20 inputs \(\d+\.\d%\) are beyond the training data's threshold", out)


def test_stored_training_rows_are_at_distance_zero(ood_store):
    from featurestore import Store
    from models.predictor import Heads

    ids = Store(ood_store).resolve_table("sms").latest().ids[:3].tolist()
    answer = Heads(Store(ood_store)).predict("spam", ids=ids)
    assert [p["ood"] for p in answer["predictions"]] == [False] * 3
    assert all(p["ood_distance"] == pytest.approx(0, abs=1e-5) for p in answer["predictions"])
    assert answer["ood"] == {"recorded": True, "threshold": answer["ood"]["threshold"], "inputs": 3, "beyond": 0, "share": 0.0,
                             "expected_share": 0.01, "warning": None}


def test_a_head_saved_without_the_description_still_predicts(ood_store, tmp_path, cli):
    """What a head saved before the training distances were kept looks like: no file, no entry."""
    from models import tasks
    from models.registry import load_model

    root = tmp_path / "store"
    shutil.copytree(ood_store, root)
    folder = root / "models" / "spam" / "1"
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["novelty"], manifest["files"]["novelty.safetensors"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "novelty.safetensors").unlink()
    model = load_model("spam", store=root)
    out = tasks.predict(model, _inputs(["WINNER!! claim your free prize now", "see you at lunch?"]))
    assert [p["label"] for p in out] == ["spam", "ham"] and [(p["ood"], p["ood_distance"]) for p in out] == [(None, None)] * 2
    assert novelty.summary(out, model.novelty) == {"recorded": False, "threshold": None, "inputs": 0, "beyond": None, "share": None,
                                                   "expected_share": None, "warning": None}
    code, shown, err = cli("predict", "spam", "--store", root, "The boundary layer of a supersonic wing")
    assert code == 0 and err == "" and "ood" not in shown


def test_a_large_training_set_is_sampled_with_its_seed(ood_store):
    from featurestore.training import training_set

    X = training_set("sms", store=ood_store).X
    first, again, other = (novelty.describe(X, seed=s, max_rows=100) for s in (0, 0, 1))
    assert first.rows.shape == (100, 384) and first.training_rows == TRAIN
    np.testing.assert_array_equal(first.rows, again.rows)
    assert not np.array_equal(first.rows, other.rows)
    assert novelty.describe(X[:1]) is None  # one row has no neighbour to measure against


@pytest.mark.parametrize(
    "beyond, inputs, warns",
    [(1, 1, False), (2, 2, True), (2, 10, False), (3, 10, True), (10, 100, False), (11, 100, True), (5, 1000, False)],
)
def test_the_warning_needs_a_share_above_10_percent_that_is_not_chance(beyond, inputs, warns):
    """Share > 10% and a binomial tail under the expected 1% below 0.001: one odd input of one is no alarm."""
    fake = novelty.Novelty(rows=np.ones((1, 2), np.float32), threshold=0.5, quantiles={}, training_rows=1)
    predictions = [{"ood": i < beyond} for i in range(inputs)]
    assert (novelty.summary(predictions, fake)["warning"] is not None) == warns


def test_an_image_head_flags_noise_images_and_not_held_out_photos(tmp_path):
    """20 ant and bee photos (real EfficientNet-Lite0) train the head; 8 other photos are in range,
    3 images of uniform noise are not, though the head calls them ants or bees with confidence."""
    pytest.importorskip("torch", reason="torch is part of the image extra")
    from PIL import Image

    from featurestore.materialization import materialize
    from featurestore.sources.images import ImageSource
    from models import image
    from models.registry import load_model, save_model

    photos = settings.data_dir() / "images" / "hymenoptera_train"
    need(photos)
    for label in ("ants", "bees"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for path in sorted((photos / label).glob("*.jpg"))[:10]:
            shutil.copy(path, tmp_path / "photos" / label / path.name)
    store = tmp_path / "store"
    materialize(ImageSource(str(tmp_path / "photos")), "photos", "efficientnet-lite0", store=store, encoder_options={"device": "cpu"})
    model = load_model("bees", save_model("bees", image.train("photos", n_splits=2, store=store), store=store).version, store=store)
    rng = np.random.default_rng(0)
    noise = []
    for i in range(3):
        noise.append(tmp_path / f"noise-{i}.png")
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)).save(noise[-1])
    held_out = [p for label in ("ants", "bees") for p in sorted((photos / label).glob("*.jpg"))[20:24]]
    out = image.predict(model, [{"id": str(p), "path": str(p)} for p in held_out + noise])
    # measured: held-out distances 0.31-0.50 under the threshold 0.564, noise 0.72-0.77 (called ants at 0.99)
    assert sum(p["ood"] for p in out[:8]) <= 2 and [p["ood"] for p in out[8:]] == [True] * 3
    assert all(p["label"] in ("ants", "bees") for p in out[8:])  # the head alone would not have said anything
