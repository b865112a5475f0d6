"""efficientnet-lite0: packaged and user checkpoints, spec and id, per-image failures, and ants vs bees.

The 245 ants/bees photos are encoded once per session (about 20-30 s on 2 CPU cores).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featurestore import settings
from featurestore.encoders import EncodeResult, get_encoder, list_encoders
from featurestore.errors import EncoderError, InvalidArgumentError

torch = pytest.importorskip("torch", reason="torch is part of the image extra")
Image = pytest.importorskip("PIL.Image", reason="Pillow is part of the image extra")

from featurestore.encoders.efficientnet import BLOCK_CHANNELS, packaged_weights  # noqa: E402
from featurestore.encoders.image import TTA_VIEWS, EfficientNetEncoder, make  # noqa: E402
from featurestore.sources.images import ImageSource  # noqa: E402

ROOT = settings.data_dir() / "images" / "hymenoptera_train"


def need_data() -> None:
    if not ROOT.is_dir():
        pytest.skip(f"needs {ROOT} (the shared evaluation data beside the project)")


@pytest.fixture(scope="session")
def lite0() -> EfficientNetEncoder:
    enc = EfficientNetEncoder(device="cpu")
    enc.load()
    return enc


@pytest.fixture(scope="session")
def hymenoptera(lite0) -> tuple[list[str], list[str], EncodeResult]:
    """(ids, labels, encode result) of every image in hymenoptera_train, through ImageSource."""
    need_data()
    ids: list[str] = []
    files: list[str] = []
    labels: list[str] = []
    for batch in ImageSource(str(ROOT)).batches():
        ids += batch.entity_id
        files += batch.content
        labels += batch.keep["label"]
    return ids, labels, lite0.encode_with_stats(files)


@pytest.fixture(scope="module")
def some_files() -> list[str]:
    need_data()
    return [str(ROOT / "ants" / "0013035.jpg"), str(ROOT / "bees" / "16838648_415acd9e3f.jpg"), str(ROOT / "ants" / "ant photos.jpg")]


# -- the key result -------------------------------------------------------------------------


@pytest.mark.slow
def test_penultimate_features_separate_ants_from_bees(hymenoptera):
    """A linear head on frozen features: >= 0.90 mean accuracy, 5-fold stratified CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    ids, labels, result = hymenoptera
    assert len(ids) == 245 and result.vectors.shape == (245, 1280)
    y = np.array([label == "bees" for label in labels])
    scores = cross_val_score(
        LogisticRegression(max_iter=5000), result.vectors, y, cv=StratifiedKFold(5, shuffle=True, random_state=0)
    )
    assert scores.mean() >= 0.90, scores


@pytest.mark.slow
def test_every_real_image_decodes_including_the_placeholder_gif(hymenoptera):
    ids, _, result = hymenoptera
    assert result.errors == [None] * 245 and not result.zero.any()
    assert result.vectors.dtype == np.float32 and np.isfinite(result.vectors).all()
    assert (result.vectors >= 0).all() and (result.vectors <= 6).all()  # pooled ReLU6 activations
    gif = ids.index("ants/imageNotFound.gif")
    assert np.abs(result.vectors[gif]).sum() > 0


# -- vectors --------------------------------------------------------------------------------


@pytest.mark.slow
def test_vectors_are_deterministic_and_do_not_depend_on_batching(lite0, some_files):
    first = lite0.encode(some_files)
    assert first.shape == (3, 1280) and first.dtype == np.float32
    np.testing.assert_array_equal(first, lite0.encode(some_files))
    one_by_one = EfficientNetEncoder(device="cpu", batch_size=1)
    assert one_by_one.encoder_id == lite0.encoder_id
    np.testing.assert_allclose(one_by_one.encode(some_files), first, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_memory_format_does_not_change_the_vectors(lite0, some_files):
    plain = EfficientNetEncoder(device="cpu", channels_last=False)
    assert plain.encoder_id == lite0.encoder_id
    np.testing.assert_allclose(plain.encode(some_files), lite0.encode(some_files), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_folded_model_matches_the_packaged_network(lite0, some_files):
    """BatchNorm folding and in-conv padding give the library model's own features."""
    from efficientnet_lite_pytorch import EfficientNet

    from featurestore.sources.imaging import decode_image

    bare = EfficientNet.from_name("efficientnet-lite0")
    bare.load_state_dict(torch.load(packaged_weights(), map_location="cpu", weights_only=True))
    bare.eval()
    x = torch.from_numpy(np.stack([decode_image(f) for f in some_files]))
    with torch.inference_mode():
        expected = bare.extract_features(x).mean(dim=(2, 3)).numpy()
    np.testing.assert_allclose(lite0.encode(some_files), expected, rtol=1e-4, atol=1e-4)


def test_empty_batch(lite0):
    result = lite0.encode_with_stats([])
    assert result.vectors.shape == (0, 1280) and result.errors == [] and result.zero.shape == (0,)


# -- bad images among good ones ---------------------------------------------------------------


@pytest.mark.slow
def test_undecodable_images_get_a_reason_and_zeros_the_rest_are_encoded(lite0, some_files, tmp_path):
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(Path(some_files[0]).read_bytes()[:5000])
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    gif = str(ROOT / "ants" / "imageNotFound.gif")
    batch = [some_files[0], str(cut), gif, str(fake), some_files[1], str(tmp_path / "gone.jpg")]
    result = EfficientNetEncoder(device="cpu", batch_size=2).encode_with_stats(batch)
    assert result.errors == [None, "truncated file", None, "not an image (unrecognised format)", None, "file not found"]
    assert result.zero.tolist() == [False, True, False, True, False, True]
    assert not result.vectors[[1, 3, 5]].any()
    good = lite0.encode([some_files[0], gif, some_files[1]])
    np.testing.assert_allclose(result.vectors[[0, 2, 4]], good, rtol=1e-4, atol=1e-5)
    assert result.n_tokens.tolist() == [0] * 6 and result.n_oov.tolist() == [0] * 6


# -- spec, id, options ------------------------------------------------------------------------


def test_spec_names_what_changes_the_vectors(lite0):
    spec = lite0.spec
    assert spec["model"] == "efficientnet-lite0" and spec["dim"] == 1280 and spec["layer"] == "head"
    assert spec["preprocessing"] == {
        "decode": "pillow, exif-transposed, first frame, rgb, alpha over white, jpeg draft",
        "resize": 256,
        "crop": 224,
        "interpolation": "bicubic",
        "normalisation": "(x-127)/128",
    }
    assert spec["pooling"] == "global-average" and spec["block"] is None and len(spec["weights"]) == 16
    assert lite0.encoder_id.startswith("efficientnet-lite0-")
    assert lite0.modality == "image" and lite0.metric == "cosine"


def test_encoder_id_changes_with_what_changes_the_vectors(lite0):
    same = [EfficientNetEncoder(device="cpu", batch_size=4, workers=3), EfficientNetEncoder(channels_last=False)]
    assert {e.encoder_id for e in same} == {lite0.encoder_id}
    other = [
        EfficientNetEncoder(block=15),
        EfficientNetEncoder(block=5),
        EfficientNetEncoder(size=192),
        EfficientNetEncoder(resize=288),
        EfficientNetEncoder(normalize=True),
    ]
    ids = {e.encoder_id for e in other}
    assert len(ids) == len(other) and lite0.encoder_id not in ids
    assert EfficientNetEncoder(block=-1).encoder_id == EfficientNetEncoder(block=15).encoder_id


def test_block_dims_match_the_network():
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    assert tuple(b._block_args.output_filters for b in net._blocks) == BLOCK_CHANNELS
    assert [EfficientNetEncoder(block=b).dim for b in (0, 5, -1)] == [16, 80, 320]


@pytest.mark.slow
def test_an_earlier_block_gives_its_pooled_output(some_files):
    enc = EfficientNetEncoder(device="cpu", block=5)
    vectors = enc.encode(some_files)
    assert vectors.shape == (3, 80) and enc.spec["layer"] == "block5" and enc.spec["dim"] == 80


def test_bad_options_are_refused_with_the_allowed_values(tmp_path):
    with pytest.raises(InvalidArgumentError, match=r"block must be an int from 0 to 15 \(or -16 to -1\), or None for the head; got 16"):
        EfficientNetEncoder(block=16)
    with pytest.raises(EncoderError, match=r"size \(the crop, 300\) must not exceed resize"):
        EfficientNetEncoder(size=300)
    with pytest.raises(InvalidArgumentError, match="batch_size must be a positive int. Got 0 instead."):
        EfficientNetEncoder(batch_size=0)
    with pytest.raises(EncoderError, match="checkpoint not found"):
        EfficientNetEncoder(tmp_path / "nope.pth")
    if not torch.cuda.is_available():
        with pytest.raises(EncoderError, match="torch sees no CUDA device here; use `device='auto'` or `device='cpu'`"):
            EfficientNetEncoder(device="cuda")  # refused when built, before any work
    with pytest.raises(InvalidArgumentError, match="device must be one of auto, cpu, cuda, cuda:N. Got 'gpu' instead."):
        EfficientNetEncoder(device="gpu")
    with pytest.raises(InvalidArgumentError, match=r"^`tta` must be one of: none, flip, flip5crop. Got 'rotate' instead.$"):
        EfficientNetEncoder(tta="rotate")


# -- test-time augmentation ---------------------------------------------------------------------


def test_tta_is_part_of_the_encoder_id_and_none_keeps_the_default_one(lite0):
    assert "tta" not in lite0.spec and EfficientNetEncoder(tta="none").encoder_id == lite0.encoder_id
    flip, crops = EfficientNetEncoder(tta="flip"), EfficientNetEncoder(tta="flip5crop")
    assert flip.spec["tta"] == {"views": "flip", "n_views": 2, "pooling": "mean"} and crops.spec["tta"]["n_views"] == 10
    assert len({lite0.encoder_id, flip.encoder_id, crops.encoder_id}) == 3
    assert EfficientNetEncoder(tta="flip", resize=288).encoder_id != flip.encoder_id  # the views' geometry counts too
    assert TTA_VIEWS == {"none": 1, "flip": 2, "flip5crop": 10}


def _square_photo(src: str, folder: Path, side: int) -> tuple[Path, Image.Image]:
    """A real photo resized to ``side`` x ``side`` and saved losslessly, so crops of it are exact."""
    with Image.open(src) as im:
        square = im.convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    path = folder / f"{Path(src).stem}-{side}.png"
    square.save(path)
    return path, square


def test_tta_flip_is_the_mean_of_the_image_and_its_mirror_through_the_encoder(lite0, some_files, tmp_path):
    """The flip view is the plain encoder's forward pass of the mirrored file, not an approximation."""
    path, square = _square_photo(some_files[1], tmp_path, 256)  # 256 - 224 is even: the centre crop of the mirror mirrors the crop
    mirror = tmp_path / "mirror.png"
    square.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirror)
    plain, flipped = lite0.encode([path, mirror])
    averaged = EfficientNetEncoder(device="cpu", tta="flip").encode([path])[0]
    np.testing.assert_allclose(averaged, (plain + flipped) / 2, rtol=1e-4, atol=1e-5)
    assert np.abs(plain - flipped).max() > 0.1  # the mirror image is another input: the check has teeth


@pytest.mark.slow
def test_tta_flip5crop_is_the_mean_of_its_ten_crops_and_does_not_depend_on_batching(some_files, tmp_path):
    """flip5crop of a 256 x 256 image = the mean of ten 224 x 224 files (centre, corners, mirrors)
    through a single-crop encoder that takes them as they are (resize 224: no resampling)."""
    path, square = _square_photo(some_files[0], tmp_path, 256)
    crops = []
    for top, left in [(16, 16), (0, 0), (0, 32), (32, 0), (32, 32)]:
        crop = square.crop((left, top, left + 224, top + 224))
        for k, view in enumerate((crop, crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
            crops.append(tmp_path / f"crop-{top}-{left}-{k}.png")
            view.save(crops[-1])
    single = EfficientNetEncoder(device="cpu", resize=224).encode(crops)
    tta = EfficientNetEncoder(device="cpu", tta="flip5crop")
    vectors = tta.encode([path, some_files[2]])  # and a JPEG of another shape, resized as it comes
    np.testing.assert_allclose(vectors[0], single.mean(axis=0), rtol=1e-4, atol=1e-5)
    one_image_per_pass = EfficientNetEncoder(device="cpu", tta="flip5crop", batch_size=4).encode([path, some_files[2]])
    np.testing.assert_allclose(one_image_per_pass, vectors, rtol=1e-4, atol=1e-5)
    assert np.abs(vectors[0] - single[0]).max() > 0.05  # the mean is not just the centre crop


# -- checkpoints from a path --------------------------------------------------------------------


def packaged_state() -> dict:
    return torch.load(packaged_weights(), map_location="cpu", weights_only=True)


@pytest.mark.slow
def test_a_wrapped_checkpoint_with_another_classifier_loads_by_name(tmp_path, lite0, some_files):
    state = {f"module.{k}": v for k, v in packaged_state().items() if not k.startswith("_fc.")}
    state["module._fc.weight"] = torch.zeros(2, 1280)  # fine-tuned for 2 classes: ignored
    state["module._fc.bias"] = torch.zeros(2)
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    enc = get_encoder(f"efficientnet-lite0:{path}", device="cpu")
    assert enc.source == str(path) and enc.encoder_id != lite0.encoder_id  # other bytes, other id
    np.testing.assert_allclose(enc.encode(some_files[:1]), lite0.encode(some_files[:1]), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_safetensors_checkpoint_loads(tmp_path, lite0, some_files):
    from safetensors.torch import save_file

    path = tmp_path / "lite0.safetensors"
    save_file({k: v.contiguous() for k, v in packaged_state().items()}, str(path))
    np.testing.assert_allclose(make(str(path), device="cpu").encode(some_files[:1]), lite0.encode(some_files[:1]), rtol=1e-5, atol=1e-6)


class NotATensor:
    pass


def test_a_checkpoint_with_python_objects_is_not_unpickled(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": NotATensor()}, path)
    with pytest.raises(EncoderError, match="cannot be read as a tensor-only checkpoint"):
        EfficientNetEncoder(path).load()


def test_a_checkpoint_of_another_network_is_refused(tmp_path):
    path = tmp_path / "linear.pth"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)
    with pytest.raises(EncoderError, match="is not an EfficientNet-Lite0 checkpoint"):
        EfficientNetEncoder(path).load()
    state = packaged_state()
    state["_conv_head.weight"] = torch.zeros(1000, 320, 1, 1)
    torch.save(state, tmp_path / "wide.pth")
    with pytest.raises(EncoderError, match="does not fit EfficientNet-Lite0"):
        EfficientNetEncoder(tmp_path / "wide.pth").load()


def test_junk_file_as_checkpoint(tmp_path):
    path = tmp_path / "junk.pth"
    path.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(EncoderError, match="cannot be read as a tensor-only checkpoint"):
        EfficientNetEncoder(path).load()


# -- registry, import cost, GPU ---------------------------------------------------------------


def test_registry_lists_it_ready_made():
    rows = {r["name"]: r for r in list_encoders()}
    row = rows["efficientnet-lite0"]
    assert row["dim"] == 1280 and row["modality"] == "image" and row["source"] == str(packaged_weights())
    with pytest.raises(EncoderError, match="^encoder 'efficientnet-lite0' does not take `pooling`; leave it out or use an encoder that does$"):
        get_encoder("efficientnet-lite0", pooling="max")


def test_importing_the_module_does_not_import_torch_or_pillow():
    code = "import sys, featurestore.encoders.image; print([m for m in ('torch', 'PIL') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (half precision, channels_last path)")
def test_cuda_half_precision_agrees_with_cpu(lite0, some_files):
    gpu = EfficientNetEncoder(device="cuda")
    assert gpu.encoder_id == lite0.encoder_id
    assert next(gpu.model().parameters()).dtype == torch.float16
    a, b = gpu.encode(some_files), lite0.encode(some_files)
    assert a.dtype == np.float32 and a.shape == b.shape
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cosine.min() > 0.999, cosine
