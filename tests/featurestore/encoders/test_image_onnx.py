"""efficientnet-lite0 through ONNX Runtime: same vectors and id as torch on real photos, the
opt-out, CUDA staying on torch, a tampered or failed export, and the decoding pipeline.

The export is made once per test session (in the session's FEATURESTORE_CACHE_DIR, see
tests/conftest.py) by the first encoder that needs it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the onnx extra")
pytest.importorskip("torch", reason="torch is part of the image extra")
Image = pytest.importorskip("PIL.Image", reason="Pillow is part of the image extra")

from featurestore import settings  # noqa: E402
from featurestore.encoders import image, onnx_backend  # noqa: E402
from featurestore.encoders.image import EfficientNetEncoder  # noqa: E402
from featurestore.encoders.onnx_image import OnnxPlan  # noqa: E402
from featurestore.sources.imaging import _resize_and_crop, decode_pixels  # noqa: E402
from tests.conftest import (
    assert_user_error,  # noqa: E402
    snapshot,  # noqa: E402
)

ROOT = settings.data_dir() / "images" / "hymenoptera_train"


@pytest.fixture(scope="module")
def photos() -> list[str]:
    if not ROOT.is_dir():
        pytest.skip(f"needs {ROOT} (the shared evaluation data beside the project)")
    return [str(ROOT / "ants" / "0013035.jpg"), str(ROOT / "bees" / "16838648_415acd9e3f.jpg"), str(ROOT / "ants" / "ant photos.jpg"),
            str(ROOT / "ants" / "imageNotFound.gif")]


@pytest.fixture(scope="module")
def onnx_lite0() -> EfficientNetEncoder:
    enc = EfficientNetEncoder(device="cpu", backend="auto")
    enc.load()  # exports once per session, or loads the session's export
    assert enc.backend == "onnx", enc.backend_reason
    return enc


@pytest.fixture(scope="module")
def torch_lite0() -> EfficientNetEncoder:
    enc = EfficientNetEncoder(device="cpu", backend="torch")
    assert enc.backend == "torch" and enc.backend_reason == "the torch backend was asked for"
    return enc


def _worst_cos(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.abs(cos - 1).max())


def _folder(enc: EfficientNetEncoder) -> Path:
    return onnx_backend.cache_folder(enc.name, enc.spec["weights"], OnnxPlan(block=enc.block, size=enc.size))


def test_onnx_features_equal_torch_features_on_real_photos_with_the_same_id(onnx_lite0, torch_lite0, photos):
    got, want = onnx_lite0.encode(photos), torch_lite0.encode(photos)
    assert got.shape == want.shape == (4, 1280) and got.dtype == np.float32
    assert _worst_cos(got, want) <= 1e-5
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert onnx_lite0.encoder_id == torch_lite0.encoder_id == EfficientNetEncoder().encoder_id
    assert onnx_lite0.spec == torch_lite0.spec
    sidecar = json.loads((_folder(onnx_lite0) / onnx_backend.SIDECAR).read_text())
    assert sidecar["check"]["passed"] is True and sidecar["check"]["photos"] == 16  # 2 photos x 4 scales, mirrored
    assert 0 <= sidecar["check"]["max_abs_cos_minus_1"] <= 1e-5
    assert sidecar["layer"] == "head" and sidecar["weights_digest"] == onnx_lite0.spec["weights"]


@pytest.mark.parametrize("tta", ["flip", "flip5crop"])
def test_tta_views_run_through_onnx_with_torch_features(tta, photos):
    onnx, plain = EfficientNetEncoder(device="cpu", tta=tta), EfficientNetEncoder(device="cpu", tta=tta, backend="torch")
    assert onnx.backend == "onnx" and onnx.encoder_id == plain.encoder_id
    assert _worst_cos(onnx.encode(photos[:2]), plain.encode(photos[:2])) <= 1e-5


def test_an_earlier_block_and_l2_normalised_vectors_through_onnx(photos):
    onnx, plain = EfficientNetEncoder(device="cpu", block=5, normalize=True), EfficientNetEncoder(device="cpu", block=5, normalize=True, backend="torch")
    got = onnx.encode(photos[:2])
    assert onnx.backend == "onnx" and got.shape == (2, 80)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    assert _worst_cos(got, plain.encode(photos[:2])) <= 1e-5


def test_the_environment_variable_and_cuda_choose_torch(monkeypatch, onnx_lite0):
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "torch")
    assert EfficientNetEncoder(device="cpu").backend_reason == "the torch backend was asked for"
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "onnx")
    assert EfficientNetEncoder(device="cpu").backend == "onnx"
    monkeypatch.delenv("FEATURESTORE_ENCODER_BACKEND")
    monkeypatch.setattr(onnx_backend, "cuda_present", lambda: True)  # no GPU here: the one thing faked
    assert EfficientNetEncoder(device="auto").backend_reason == "CUDA is used through torch"
    assert EfficientNetEncoder(device="cpu").backend == "onnx"  # an explicit CPU device still uses ONNX Runtime
    assert EfficientNetEncoder(device="auto", backend="onnx").backend == "onnx"  # asked for: CPU through ONNX, not the GPU


def test_backend_torch_on_the_command_line_is_respected(tmp_path, photos, cli, monkeypatch, onnx_lite0):
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:2]:
        shutil.copy(p, folder / Path(p).name)
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "auto")  # restored after the in-process CLI sets it
    monkeypatch.setattr(image, "_ONNX", {})
    store = tmp_path / "store"
    code, out, err = cli("materialize", folder, "--view", "p", "--encoder", "efficientnet-lite0", "--store", store,
                         "--runner", "inline", "--backend", "torch", "--json")
    assert code == 0, err
    assert image._ONNX == {}  # no ONNX session was loaded
    from featurestore.store import Store

    summary = json.loads(out)
    assert summary["encoder_id"] == onnx_lite0.encoder_id and summary["encoded"] == 2
    frame = Store(str(store)).table("p", onnx_lite0.encoder_id).latest()
    assert _worst_cos(frame.vectors, onnx_lite0.encode([str(folder / i) for i in frame.ids])) <= 1e-5


def test_a_bad_backend_for_an_image_view_is_one_line_exit_2_and_the_store_unchanged(tmp_path, photos, cli):
    store = tmp_path / "store"
    before = snapshot(store)
    assert_user_error(
        cli("materialize", Path(photos[0]).parent, "--view", "p", "--encoder", "efficientnet-lite0", "--store", store, "--runner", "inline", "--backend", "tensorrt"),
        "backend must be one of auto, torch, onnx. Got 'tensorrt' instead.",
    )
    assert snapshot(store) == before


@pytest.fixture
def own_cache(tmp_path, monkeypatch, onnx_lite0):
    """A cache folder of this test holding a copy of the session's export, and no export loaded in this process."""
    source = _folder(onnx_lite0)
    monkeypatch.setenv("FEATURESTORE_CACHE_DIR", str(tmp_path / "cache"))
    target = _folder(onnx_lite0)
    shutil.copytree(source, target)
    monkeypatch.setattr(image, "_ONNX", {})
    monkeypatch.setattr(onnx_backend, "_SEEN", set())
    return target


@pytest.mark.slow
def test_a_tampered_export_is_refused_in_one_line_and_exported_again(own_cache, onnx_lite0, photos, capsys):
    model = own_cache / onnx_backend.MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    enc = EfficientNetEncoder(device="cpu")
    vectors = enc.encode(photos[:2])
    assert enc.backend == "onnx"
    assert capsys.readouterr().err.strip().splitlines() == [
        f"featurestore: warning: {model} is not the file exported (its sha256 differs from onnx.json); exporting it again",
        "featurestore: exporting efficientnet-lite0 to ONNX (once per weights file)...",
    ]
    np.testing.assert_allclose(vectors, onnx_lite0.encode(photos[:2]), rtol=1e-5, atol=1e-5)
    sidecar = json.loads((own_cache / onnx_backend.SIDECAR).read_text())
    assert hashlib.sha256(model.read_bytes()).hexdigest() == sidecar["onnx_sha256"]
    assert sorted(p.name for p in own_cache.parent.iterdir()) == [own_cache.name, f"{own_cache.name}.lock"]


def test_an_export_that_failed_its_check_keeps_torch_and_says_so_once(own_cache, photos, capsys):
    sidecar = json.loads((own_cache / onnx_backend.SIDECAR).read_text())
    sidecar["check"].update(passed=False, max_abs_cos_minus_1=0.02, reason="max |cos - 1| = 0.02 on 16 photos, above 1e-05")
    (own_cache / onnx_backend.SIDECAR).write_text(json.dumps(sidecar))
    enc = EfficientNetEncoder(device="cpu")
    weights = enc.weights.name
    assert enc.backend_reason == f"{weights}: its ONNX export failed the check against torch: max |cos - 1| = 0.02 on 16 photos, above 1e-05"
    assert EfficientNetEncoder(device="cpu").backend == "torch"
    assert capsys.readouterr().err.count("featurestore: warning: efficientnet-lite0 runs on torch, not ONNX Runtime: ") == 1


# -- decoding -----------------------------------------------------------------------------------


def test_the_decoding_pipeline_gives_the_forward_pass_of_each_file_decoded_alone(onnx_lite0, photos):
    """Two batches decoding ahead in the pool, batches of 2: the same inputs as decoding one by one."""
    enc = EfficientNetEncoder(device="cpu", batch_size=2, workers=3)
    files = photos * 2
    np.testing.assert_array_equal(enc.encode(files), enc._forward(np.stack([decode_pixels(f) for f in files])))


def test_photos_that_leave_no_smaller_dct_scale_decode_as_a_full_decode_does(photos):
    """A JPEG whose shorter side is under 512 (most of the data's photos) decodes at full scale: the draft changes nothing."""
    checked = 0
    for f in photos[:3]:
        with Image.open(f) as im:
            if min(im.size) >= 512:  # 0013035.jpg is 768 x 512: it decodes at 1/2 scale
                continue
            full = np.asarray(_resize_and_crop(im.convert("RGB"), 224, 256))
        np.testing.assert_array_equal(decode_pixels(f), full)
        checked += 1
    assert checked == 2


def test_a_large_jpeg_decoded_at_a_reduced_dct_scale_keeps_its_features(onnx_lite0, photos, tmp_path):
    """A 2000 x 1500 JPEG decodes at 1/4 scale (500 x 375, still >= 256): pixels change a little,
    the features hardly (recorded in the encoder's spec as ``jpeg draft``)."""
    with Image.open(photos[0]) as im:
        big = im.convert("RGB").resize((2000, 1500), Image.Resampling.BICUBIC)
    path = tmp_path / "big.jpg"
    big.save(path, quality=95)
    with Image.open(path) as im:
        full = np.asarray(_resize_and_crop(im.convert("RGB"), 224, 256))
    draft = decode_pixels(path)
    assert np.abs(draft.astype(int) - full.astype(int)).mean() > 0  # the reduced scale is in use
    a, b = onnx_lite0._forward(np.stack([draft, full]))
    assert _worst_cos(a[None], b[None]) < 2e-3


def test_an_image_search_process_with_a_cached_export_imports_no_torch(tmp_path, photos, onnx_lite0):
    import os
    import subprocess
    import sys

    from flows.cli.main import main

    folder = tmp_path / "photos"
    folder.mkdir()
    for p in photos[:3]:
        shutil.copy(p, folder / Path(p).name)
    store = tmp_path / "store"
    assert main(["materialize", str(folder), "--view", "p", "--encoder", "efficientnet-lite0", "--store", str(store), "--runner", "inline"]) == 0
    assert main(["index", "build", "--view", "p", "--store", str(store)]) == 0
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.cli.main", "search", "--view", "p", "--store", str(store),
         "--image", photos[0], "-k", "2", "--json"],
        capture_output=True, text=True, check=False, env={**os.environ, "FEATURESTORE_ENCODER_BACKEND": ""},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in out.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    assert "torch" not in imported and "onnxruntime" in imported
    hit = json.loads(out.stdout)[0][0]
    assert (hit["entity_id"], hit["score"]) == (Path(photos[0]).name, pytest.approx(1.0, abs=1e-5))
    assert hit["path"].endswith(Path(photos[0]).name)
