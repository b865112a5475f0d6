"""Images and token views through the same command: failures per row, user errors, store unchanged."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from featurestore.store import Store
from tests.conftest import DATA, assert_user_error, need, snapshot
from tests.flows.conftest import IMAGES

TESTA = DATA / "ner" / "conll2003" / "eng.testa"


def test_a_corrupt_jpeg_is_a_failed_row_and_the_rest_are_stored(tmp_path, image_folder, cli):
    good = next((image_folder / "ants").glob("*.jpg"))
    (image_folder / "ants" / "broken.jpg").write_bytes(good.read_bytes()[:2000])
    shutil.copy(IMAGES / "ants" / "imageNotFound.gif", image_folder / "ants" / "imageNotFound.gif")
    code, out, err = cli("materialize", image_folder, "--view", "bees", "--encoder", "efficientnet-lite0",
                         "--store", tmp_path / "s", "--runner", "inline", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["rows_seen"], summary["encoded"], summary["failed"]) == (8, 7, 1)
    assert summary["failures"][0]["entity_id"] == "ants/broken.jpg" and "truncated" in summary["failures"][0]["reason"]
    frame = Store(tmp_path / "s").resolve_table("bees").latest(["label"])
    assert frame.vectors.shape == (7, 1280)
    assert "ants/imageNotFound.gif" in frame.ids.tolist()  # a real GIF: its first frame is encoded
    assert sorted(set(frame.columns.column("label").to_pylist())) == ["ants", "bees"]
    strict = cli("materialize", image_folder, "--view", "bees2", "--encoder", "efficientnet-lite0",
                 "--store", tmp_path / "s", "--runner", "inline", "--strict")
    assert_user_error(strict, "ants/broken.jpg: truncated")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "empty").mkdir() or d / "empty", "no images"),
        (lambda d: d / "nowhere", "not found"),
    ],
    ids=["folder-without-images", "missing-path"],
)
def test_image_user_errors_leave_the_store_unchanged(tmp_path, image_folder, cli, make, message):
    store = tmp_path / "s"
    assert cli("materialize", image_folder, "--view", "bees", "--encoder", "efficientnet-lite0", "--store", store, "--runner", "inline")[0] == 0
    before = snapshot(store)
    result = cli("materialize", make(tmp_path), "--view", "bees", "--encoder", "efficientnet-lite0", "--store", store, "--format", "images")
    assert_user_error(result, message)
    assert snapshot(store) == before


def test_text_encoder_on_images_is_refused(tmp_path, image_folder, cli):
    assert_user_error(cli("materialize", image_folder, "--view", "x", "--encoder", "word2vec", "--store", tmp_path / "s"),
                      "takes text input but the source holds image")
    assert not (tmp_path / "s").exists()


def test_conll_malformed_line_names_the_line(tmp_path, cli, word2vec):
    need(TESTA)
    head = TESTA.read_text(encoding="utf-8").splitlines()[:30]
    head[11] = "EU NNP I-NP"  # three columns in a four-column file
    bad = tmp_path / "bad.conll"
    bad.write_text("\n".join(head) + "\n", encoding="utf-8")
    result = cli("materialize", bad, "--view", "ner", "--encoder", "word2vec", "--granularity", "token", "--store", tmp_path / "s")
    assert_user_error(result, "line 12")
    assert not (tmp_path / "s").exists()


def test_a_sentence_past_the_model_limit_keeps_every_word(tmp_path, cli, minilm):
    words = " ".join(["Antwerp", "harbour", "officials", "said", "shipments", "of", "grain", "rose", "sharply"] * 45).split()
    path = tmp_path / "long.conll"
    path.write_text("\n".join(f"{w} O" for w in words) + "\n", encoding="utf-8")
    code, out, err = cli("materialize", path, "--view", "long", "--encoder", "minilm", "--granularity", "token",
                         "--store", tmp_path / "s", "--runner", "inline", "--json")
    assert code == 0, err
    assert json.loads(out)["tokens"] == len(words) == 405
    frame = Store(tmp_path / "s").resolve_table("long").latest(["token"])
    assert frame.columns.column("token").to_pylist() == words


def test_layers_and_subword_reach_the_token_encoder(tmp_path, cli, minilm):
    need(TESTA)
    path = tmp_path / "few.conll"
    path.write_text("\n".join(TESTA.read_text(encoding="utf-8").splitlines()[:40]) + "\n", encoding="utf-8")
    store = tmp_path / "s"
    common = ("--encoder", "minilm", "--granularity", "token", "--store", store, "--runner", "inline", "--json")
    assert cli("materialize", path, "--view", "last", *common)[0] == 0
    code, out, err = cli("materialize", path, "--view", "last4", *common, "--layers", "last4", "--subword", "mean")
    assert code == 0, err
    spec = Store(store).resolve_table("last4").meta.encoder_spec
    assert (spec["layers"], spec["subword"]) == ("last4", "mean")
    assert json.loads(out)["encoder_id"] != Store(store).resolve_table("last").meta.encoder_id
    before = snapshot(store)
    assert_user_error(cli("materialize", path, "--view", "last4", *common, "--layers", "last8"),
                      "--layers must be one of 'last', 'last4'. Got 'last8' instead.")
    assert_user_error(cli("materialize", path, "--view", "w2v", "--encoder", "word2vec", "--granularity", "token",
                          "--store", store, "--layers", "last4"),
                      "encoder 'word2vec' does not take --layers; leave it out or use an encoder that does")
    assert snapshot(store) == before


def test_long_text_windows_reaches_the_table_and_its_queries(tmp_path, cli, minilm):
    """`--long-text windows`: the table records the option, its vectors read whole documents, and
    a text query is encoded by the same encoder (its encoder id matches the view's)."""
    from featurestore.encoders import get_encoder
    from featurestore.index.lifecycle import view_encoder

    long_doc = " ".join(f"the flutter of panel {i} grew with the dynamic pressure ." for i in range(40))
    docs = [{"id": "long", "text": long_doc + " finally the panel failed in fatigue ."}, {"id": "short", "text": "a note on shock waves"}]
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d) for d in docs) + "\n", encoding="utf-8")
    store = tmp_path / "s"
    code, out, err = cli("materialize", path, "--view", "docs", "--encoder", "minilm", "--long-text", "windows", "--id-col", "id",
                         "--store", store, "--runner", "inline", "--json")
    assert code == 0, err
    table = Store(store).resolve_table("docs")
    windows = get_encoder("minilm", device="cpu", long_text="windows")
    assert table.meta.encoder_options == {"long_text": "windows"} and table.meta.encoder_id == windows.encoder_id
    assert view_encoder(table).encoder_id == windows.encoder_id
    frame = table.latest([])
    order = [frame.ids.tolist().index(d["id"]) for d in docs]
    np.testing.assert_allclose(frame.vectors[order], windows.encode([d["text"] for d in docs]), atol=1e-5)
    assert not np.allclose(frame.vectors[order[0]], minilm.encode([docs[0]["text"]])[0], atol=1e-3)


def test_tta_reaches_the_table_and_its_queries_and_bad_values_are_one_line(tmp_path, image_folder, cli):
    """`--tta flip`: the table records the option and its own encoder id, stores the flip-averaged
    vectors, and a query image is encoded the same way; a bad value or a text encoder is refused,
    and so is a fixed C for the image head that chooses its own."""
    from featurestore.encoders.image import EfficientNetEncoder
    from featurestore.index.lifecycle import view_encoder

    store = tmp_path / "s"
    code, out, err = cli("materialize", image_folder, "--view", "bees", "--encoder", "efficientnet-lite0", "--tta", "flip",
                         "--store", store, "--runner", "inline", "--json")
    assert code == 0, err
    table = Store(store).resolve_table("bees")
    flip = EfficientNetEncoder(device="cpu", tta="flip")
    assert table.meta.encoder_options == {"tta": "flip"} and json.loads(out)["encoder_id"] == flip.encoder_id
    assert view_encoder(table).encoder_id == flip.encoder_id
    frame = table.latest([])
    files = [str(image_folder / entity) for entity in frame.ids.tolist()]
    np.testing.assert_allclose(frame.vectors, flip.encode(files), rtol=1e-4, atol=1e-5)
    before = snapshot(store)
    common = ("--view", "bees", "--encoder", "efficientnet-lite0", "--store", store, "--runner", "inline")
    assert_user_error(cli("materialize", image_folder, *common, "--tta", "rotate"),
                      "--tta must be one of: none, flip, flip5crop. Got 'rotate' instead.")
    texts = tmp_path / "t.txt"
    texts.write_text("a line\n", encoding="utf-8")
    assert_user_error(cli("materialize", texts, "--view", "t", "--encoder", "word2vec", "--store", store, "--tta", "flip"),
                      "encoder 'word2vec' does not take --tta; leave it out or use an encoder that does")
    assert_user_error(cli("train", "image", "--view", "bees", "--store", store, "--option", "C=5", "--runner", "inline"),
                      "head 'logistic-cv' chooses C by inner cross-validation; to fix C=5, use head 'logistic'")
    assert snapshot(store) == before
