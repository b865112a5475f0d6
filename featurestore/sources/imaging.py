"""Decoding one image file into the array a CNN takes: ``(3, size, size) float32``.

:func:`decode_pixels` stops before step 5 and returns the ``(size, size, 3) uint8`` crop: the
encoder normalises a whole batch at once in torch, and a uint8 batch is a quarter of the bytes
to hand from the decoding threads to the forward pass.

The steps, in order, are part of an image encoder's spec (they change the vectors):

1. open with Pillow; a JPEG is decoded at a reduced DCT scale (1/2, 1/4, 1/8) when the
   shorter side stays at least ``resize`` (``Image.draft``): big photos decode several times
   faster and the bicubic resize below still does the final resampling;
2. apply the EXIF orientation; take the first frame of an animated file;
3. convert to 8-bit RGB: alpha (RGBA, LA, palette or colour-key transparency) is composited
   onto white, 16-bit greyscale is scaled by 255/65535, CMYK, palette, greyscale and
   bilevel images go through Pillow's conversion;
4. resize the shorter side to ``resize`` (longer side ``int(resize * long / short)``) with
   bicubic interpolation (antialiased when shrinking) and centre-crop ``size`` x ``size``,
   as torchvision's ``Resize(resize)`` + ``CenterCrop(size)`` do. Only the crop window is
   resampled (``Image.resize(box=...)``): the same filter taps for less work (pixels agree
   with resize-then-crop up to fixed-point rounding);
5. normalise each channel as ``(x - 127) / 128``, the EfficientNet-Lite convention.

A file that cannot be decoded raises :class:`ImageDecodeError` whose message is a short
reason (``truncated file``, ``not an image``, ...) recorded for that row; the caller knows
the path.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from featurestore.errors import ImageDecodeError
from featurestore.extras import require

__all__ = ["INTERPOLATION", "NORMALISATION", "decode_image", "decode_pixels"]

INTERPOLATION = "bicubic"
NORMALISATION = "(x-127)/128"
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
# What Pillow's decoders raise on damaged data (besides OSError for truncation).
_DECODER_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, ZeroDivisionError, struct.error)


def decode_image(path: str | os.PathLike[str], size: int = 224, resize: int = 256) -> np.ndarray:
    """The image at ``path`` as a normalised ``(3, size, size) float32`` array (CHW, RGB).

    Raises :class:`ImageDecodeError` with a short reason when the file is missing, empty,
    not an image, truncated or otherwise undecodable.
    """
    pixels = decode_pixels(path, size, resize).astype(np.float32)
    pixels -= 127.0
    pixels /= 128.0
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def decode_pixels(path: str | os.PathLike[str], size: int = 224, resize: int = 256) -> np.ndarray:
    """The resized, centre-cropped image at ``path`` as ``(size, size, 3) uint8`` (HWC, RGB), not normalised.

    Raises :class:`ImageDecodeError` like :func:`decode_image`.
    """
    if not 0 < size <= resize:
        raise ValueError(f"size must be a positive int no larger than resize; got size={size}, resize={resize}")
    image = _open_rgb(os.fspath(path), resize)
    return np.asarray(_resize_and_crop(image, size, resize), dtype=np.uint8)


def _open_rgb(path: str, resize: int) -> Any:
    """The first frame, upright, as an 8-bit RGB Pillow image (loaded, file closed)."""
    Image = require("PIL.Image", "image")
    ImageOps = require("PIL.ImageOps", "image")
    try:
        if os.path.getsize(path) == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with Image.open(path) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError(f"zero-size image ({width}x{height})")
            if image.format == "JPEG":
                scale = resize / min(width, height)
                image.draft(None, (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))))
            upright = ImageOps.exif_transpose(image)  # a loaded copy of frame 0
            return _to_rgb(upright, Image)
    except ImageDecodeError:
        raise
    except FileNotFoundError:
        raise ImageDecodeError("file not found") from None
    except IsADirectoryError:
        raise ImageDecodeError("a folder, not a file") from None
    except PermissionError:
        raise ImageDecodeError("cannot read the file: permission denied") from None
    except Image.UnidentifiedImageError:
        raise ImageDecodeError("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"image too large ({exc})") from None
    except _DECODER_ERRORS as exc:
        message = str(exc)
        if "truncated" in message.lower() or isinstance(exc, EOFError):
            raise ImageDecodeError("truncated file") from None
        raise ImageDecodeError(f"corrupt image data ({type(exc).__name__}: {message})") from None


def _to_rgb(image: Any, Image: Any) -> Any:
    """8-bit RGB: alpha over white, 16-bit greyscale scaled down, everything else converted."""
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if mode in _SIXTEEN_BIT_MODES:
        levels = np.asarray(image, dtype=np.float32) * (255.0 / 65535.0)
        grey = np.clip(np.rint(levels), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise ImageDecodeError(f"unsupported colour mode {mode}") from None


def _resize_and_crop(image: Any, size: int, resize: int) -> Any:
    """Shorter side to ``resize`` (bicubic), centre ``size`` crop: only the crop window is resampled."""
    Image = require("PIL.Image", "image")
    width, height = image.size
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_w, new_h = int(resize * width / height), resize
    left = int(round((new_w - size) / 2.0))
    top = int(round((new_h - size) / 2.0))
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return image.resize((size, size), Image.Resampling.BICUBIC, box=box)
