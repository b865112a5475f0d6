"""decode_image: colour modes, EXIF orientation, animation, geometry, and a reason for each bad file."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from featurestore import settings
from featurestore.errors import ImageDecodeError, SourceError
from featurestore.sources.imaging import decode_image, decode_pixels

Image = pytest.importorskip("PIL.Image", reason="Pillow is part of the image extra")

ANTS = settings.data_dir() / "images" / "hymenoptera_train" / "ants"
WHITE = 1.0  # (255 - 127) / 128
BLACK = -127 / 128


def level(v: float) -> float:
    """An 8-bit level as decode_image normalises it."""
    return (v - 127) / 128


def need_ants() -> None:
    if not ANTS.is_dir():
        pytest.skip(f"needs {ANTS} (the shared evaluation data beside the project)")


def save(image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_rgb_shape_dtype_range_and_colour(tmp_path):
    path = save(Image.new("RGB", (320, 240), (255, 0, 128)), tmp_path / "a.png")
    x = decode_image(path)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[:, 112, 112], [WHITE, BLACK, level(128)], atol=1e-6)


def test_size_and_resize_are_honoured_and_checked(tmp_path):
    path = save(Image.new("RGB", (50, 80), (10, 20, 30)), tmp_path / "small.png")
    assert decode_image(path, size=100, resize=120).shape == (3, 100, 100)
    with pytest.raises(ValueError, match="size must be .* no larger than resize"):
        decode_image(path, size=300, resize=256)


def test_rgba_composites_onto_white(tmp_path):
    image = Image.new("RGBA", (256, 256), (255, 0, 0, 255))
    image.paste((0, 0, 255, 0), (0, 0, 256, 128))  # top half fully transparent (blue that must not show)
    x = decode_image(save(image, tmp_path / "a.png"), size=256, resize=256)
    np.testing.assert_allclose(x[:, 10, 10], [WHITE, WHITE, WHITE], atol=1e-6)
    np.testing.assert_allclose(x[:, 240, 10], [WHITE, BLACK, BLACK], atol=1e-6)


def test_half_transparent_pixels_blend_with_white(tmp_path):
    x = decode_image(save(Image.new("LA", (64, 64), (0, 128)), tmp_path / "la.png"), size=64, resize=64)
    assert np.allclose(x, level(127), atol=1.5 / 128)  # black at alpha 128/255 over white


def test_palette_with_transparency_composites_onto_white(tmp_path):
    image = Image.new("P", (200, 200), 1)
    image.putpalette([0, 255, 0] + [255, 0, 0] + [0] * 762)
    image.paste(0, (0, 0, 200, 100))  # index 0 (green) is the transparent one
    image.info["transparency"] = 0
    x = decode_image(save(image, tmp_path / "p.gif", transparency=0), size=200, resize=200)
    np.testing.assert_allclose(x[:, 20, 100], [WHITE, WHITE, WHITE], atol=1e-6)
    np.testing.assert_allclose(x[:, 180, 100], [WHITE, BLACK, BLACK], atol=1e-6)


def test_palette_without_transparency(tmp_path):
    image = Image.new("RGB", (64, 64), (0, 0, 255)).convert("P", palette=Image.Palette.ADAPTIVE)
    x = decode_image(save(image, tmp_path / "p.png"), size=64, resize=64)
    np.testing.assert_allclose(x[:, 32, 32], [BLACK, BLACK, WHITE], atol=1e-6)


def test_greyscale_and_bilevel_become_three_equal_channels(tmp_path):
    for mode, value in (("L", 77), ("1", 1)):
        x = decode_image(save(Image.new(mode, (100, 60), value), tmp_path / f"{mode}.png"))
        assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])
        assert np.allclose(x, level(77 if mode == "L" else 255), atol=1e-6)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    array = np.full((64, 64), 65535, dtype=np.uint16)
    array[32:] = 32896  # 128 * 257
    image = Image.fromarray(array)
    assert image.mode.startswith("I;16")
    x = decode_image(save(image, tmp_path / "g16.png"), size=64, resize=64)
    np.testing.assert_allclose(x[:, 5, 5], [WHITE] * 3, atol=1e-6)
    np.testing.assert_allclose(x[:, 60, 5], [level(128)] * 3, atol=1e-6)


def test_cmyk_jpeg_converts_to_rgb(tmp_path):
    path = save(Image.new("CMYK", (128, 128), (255, 0, 0, 0)), tmp_path / "cyan.jpg", quality=95)
    assert Image.open(path).mode == "CMYK"
    x = decode_image(path, size=128, resize=128)
    np.testing.assert_allclose(x[:, 64, 64], [BLACK, WHITE, WHITE], atol=3 / 128)  # cyan


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (300, 200), (255, 0, 0))
    image.paste((0, 0, 255), (150, 0, 300, 200))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = save(image, tmp_path / "rotated.jpg", exif=exif, quality=95)
    x = decode_image(path, size=200, resize=200)  # upright: 200 wide, 300 high; red on top
    assert x[0, 20, 100] > 0.9 and x[2, 20, 100] < -0.9
    assert x[2, 180, 100] > 0.9 and x[0, 180, 100] < -0.9
    plain = decode_image(save(image, tmp_path / "plain.jpg", quality=95), size=200, resize=200)
    assert plain[0, 100, 20] > 0.9 and plain[2, 100, 180] > 0.9  # without EXIF: red left, blue right


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    x = decode_image(path, size=64, resize=64)
    np.testing.assert_allclose(x[:, 32, 32], [WHITE, BLACK, BLACK], atol=1e-6)


def test_resize_and_centre_crop_match_resize_then_crop(tmp_path):
    rng = np.random.default_rng(0)
    array = (rng.random((180, 400, 3)) * 255).astype(np.uint8)
    path = save(Image.fromarray(array), tmp_path / "noise.png")
    image = Image.open(path)
    full = image.resize((int(256 * 400 / 180), 256), Image.Resampling.BICUBIC)
    left = int(round((full.width - 224) / 2))
    expected = np.asarray(full.crop((left, 16, left + 224, 240)), dtype=np.float32).transpose(2, 0, 1)
    got = decode_image(path) * 128 + 127
    assert np.abs(got - expected).mean() < 0.5  # same taps; fixed-point rounding aside


def test_extreme_aspect_ratio_and_tiny_images_decode(tmp_path):
    assert decode_image(save(Image.new("RGB", (4000, 3), (9, 9, 9)), tmp_path / "strip.png")).shape == (3, 224, 224)
    assert decode_image(save(Image.new("RGB", (1, 1), (9, 9, 9)), tmp_path / "dot.png")).shape == (3, 224, 224)


def test_decoding_is_deterministic():
    need_ants()
    path = ANTS / "0013035.jpg"
    assert np.array_equal(decode_image(path), decode_image(path))


def test_the_real_placeholder_gif_is_a_valid_image():
    need_ants()
    x = decode_image(ANTS / "imageNotFound.gif")  # a 300x300 palette GIF saying "image not found"
    assert x.shape == (3, 224, 224) and x.mean() > 0.5  # mostly white


@pytest.mark.parametrize("keep_bytes", [0.5, 0.1, 0.02])
def test_truncated_jpeg_is_a_decode_error(tmp_path, keep_bytes):
    need_ants()
    data = (ANTS / "0013035.jpg").read_bytes()
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: int(len(data) * keep_bytes)])
    with pytest.raises(ImageDecodeError, match="^truncated file$"):
        decode_image(path)


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("notes.jpg", b"this is a text file, not a JPEG\n", r"^not an image \(unrecognised format\)$"),
        ("empty.png", b"", r"^empty file \(0 bytes\)$"),
        ("header-only.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, r"."),
    ],
)
def test_files_that_are_not_images_get_a_short_reason(tmp_path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(path)


def test_missing_file_and_folder_are_decode_errors(tmp_path):
    with pytest.raises(ImageDecodeError, match="^file not found$"):
        decode_image(tmp_path / "gone.jpg")
    with pytest.raises(ImageDecodeError, match="folder"):
        decode_image(tmp_path)


def test_decode_error_is_a_source_error_and_pickles():
    err = pickle.loads(pickle.dumps(ImageDecodeError("truncated file")))
    assert isinstance(err, SourceError) and str(err) == "truncated file"


def test_decode_pixels_is_the_crop_before_normalisation():
    need_ants()
    path = sorted(ANTS.glob("*.jpg"))[0]
    crop = decode_pixels(path)
    assert crop.dtype == np.uint8 and crop.shape == (224, 224, 3)
    np.testing.assert_array_equal(crop.transpose(2, 0, 1).astype(np.float32), decode_image(path) * 128 + 127)
