"""EfficientNet-Lite0 (:mod:`featurestore.encoders.image`) through ONNX Runtime: its export plan
and runtime model.

The BatchNorm-folded network is exported with the normalisation ``(x - 127) / 128`` and the
global average inside the graph: ``pixels (batch, size, size, 3) uint8`` in (a quarter of the
bytes of float32 from the decoding threads, the transpose to NCHW in the graph), ``features
(batch, dim) float32`` out. An export is kept only if its features match torch's on real
photos (scikit-learn's two sample photos at four scales and mirrored: max ``|cos - 1| <= 1e-5``);
the cache, the check's record and the session are :mod:`featurestore.encoders.onnx_backend`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.encoders.onnx_backend import OPSET, session
from featurestore.extras import require
from featurestore.sources.imaging import NORMALISATION, decode_pixels


CHECK_SCALES = (1.0, 8 / 7, 10 / 7, 2.0)  # shorter side / crop of the check photos' views


def check_photos() -> list[Path] | None:
    """The real photos an export is checked on: scikit-learn's sample images (``china.jpg``,
    ``flower.jpg``, 427 x 640 JPEGs shipped in its wheel), found without importing it; None if absent."""
    spec = find_spec("sklearn")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        photos = [Path(folder) / "datasets" / "images" / name for name in ("china.jpg", "flower.jpg")]
        if all(p.is_file() for p in photos):
            return photos
    return None


def check_pixels(size: int) -> np.ndarray:
    """``(16, size, size, 3) uint8``: each check photo decoded as the encoder decodes, its shorter
    side resized to ``size`` x :data:`CHECK_SCALES`, centre-cropped, and each crop's mirror image."""
    crops = [decode_pixels(p, size=size, resize=max(size, int(round(size * k)))) for p in check_photos() or [] for k in CHECK_SCALES]
    return np.stack([view for c in crops for view in (c, c[:, ::-1])])


@dataclass(frozen=True)
class OnnxPlan:
    """The ONNX export of one network configuration (an :class:`~featurestore.encoders.onnx_backend.Export`):
    ``pixels (batch, size, size, 3) uint8`` in, ``features (batch, dim) float32`` out, the
    normalisation, the BatchNorm-folded network and the global average inside the graph."""

    block: int | None
    size: int

    @property
    def layer(self) -> str:
        return "head" if self.block is None else f"block{self.block}"

    def key_parts(self) -> dict[str, Any]:
        return {"family": "efficientnet-lite", "layer": self.layer, "crop": self.size, "input": "uint8 nhwc", "normalisation": NORMALISATION, "folded": True}

    def sidecar_parts(self) -> dict[str, Any]:
        return {"layer": self.layer, "input": f"pixels: (batch, {self.size}, {self.size}, 3) uint8", "output": "features: (batch, dim) float32"}

    def write(self, torch_model: Any, path: Path) -> None:
        import warnings

        from featurestore.encoders.efficientnet import pooled_features

        torch = require("torch", "image")
        block = self.block

        class Pooled(torch.nn.Module):
            def __init__(self, net: Any) -> None:
                super().__init__()
                self.net = net

            def forward(self, pixels: Any) -> Any:
                return pooled_features(self.net, pixels, block, channels_last=False)

        example = torch.zeros((2, self.size, self.size, 3), dtype=torch.uint8)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's notices: the check is what tells
            torch.onnx.export(
                Pooled(torch_model).eval(),
                (example,),
                str(path),
                input_names=["pixels"],
                output_names=["features"],
                dynamic_axes={"pixels": {0: "batch"}, "features": {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )

    def build(self, model_bytes: bytes) -> OnnxImageModel:
        return OnnxImageModel(model_bytes)

    def compare(self, onnx_model: Any, torch_model: Any) -> tuple[float, int, str]:
        """Against the torch network on :func:`check_pixels`, in batches of 5 (a remainder included)."""
        from featurestore.encoders.efficientnet import pooled_features

        torch = require("torch", "image")
        pixels = check_pixels(self.size)
        with torch.inference_mode():
            want = np.concatenate([pooled_features(torch_model, torch.from_numpy(pixels[i : i + 5]), self.block, True).cpu().numpy() for i in range(0, len(pixels), 5)])
        got = np.concatenate([onnx_model.run(pixels[i : i + 5]) for i in range(0, len(pixels), 5)])
        cos = (got * want).sum(axis=1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
        return float(np.abs(cos - 1.0).max()), len(pixels), "photos"


class OnnxImageModel:
    """An exported network: ``run(pixels (n, size, size, 3) uint8) -> (n, dim) float32``."""

    def __init__(self, model_bytes: bytes, *, n_threads: int | None = None) -> None:
        self.session = session(model_bytes, n_threads=n_threads)

    def run(self, pixels: np.ndarray) -> np.ndarray:
        (features,) = self.session.run(["features"], {"pixels": np.ascontiguousarray(pixels, dtype=np.uint8)})
        return features
