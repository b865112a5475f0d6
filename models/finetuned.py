"""The fine-tuned classifiers behind ``--unfreeze-last K`` (see :mod:`models.finetune` for the task).

:class:`FineTunedClassifier` trains the top part of an encoder (its last K layers) with a linear
classifier over cached lower activations; :class:`FineTunedImageClassifier` (EfficientNet-Lite0
MBConv blocks + conv head) and :class:`FineTunedTextClassifier` (MiniLM transformer layers + mean
pooling) know where to cut their network. Training: AdamW, pretrained layers at a tenth of the
learning rate, BatchNorm in eval mode, early stopping on a seeded, stratified, grouped held-out
slice, best weights kept; seeded, so two runs give identical tensors.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from featurestore.encoders import BaseEncoder, from_meta
from featurestore.encoders.base import encoder_id_from_spec, resolve_device
from featurestore.errors import FineTuneError, ImageDecodeError, InvalidArgumentError
from featurestore.extras import require
from featurestore.params import positive_int
from featurestore.sources.imaging import decode_pixels
from models.torch_utils import length_batches, require_torch, seeded


ENCODER_LR_FACTOR = 0.1
DROPOUT = 0.2
Activations = Any  # images: (n, C, H, W) float32 tensor; texts: list of (n_pieces, hidden) float32 tensors


class FineTunedClassifier(BaseEstimator):
    """The scikit-learn face of a fine-tuned top part; ``X`` is what :meth:`activations` returns.

    Parameters: ``encoder_ref``/``encoder_options`` rebuild the base encoder, ``encoder_id`` is
    checked against it; ``unfreeze_last`` (K) layers train; ``max_epochs``, ``patience`` (epochs
    without a lower validation loss), ``lr`` (the classifier's), ``batch_size``,
    ``validation_fraction``, ``class_weight`` (``balanced`` or None) and ``random_state``.
    """

    modality = ""

    def __init__(
        self, encoder_ref: str, encoder_id: str, unfreeze_last: int, *, encoder_options: dict[str, Any] | None = None,
        max_epochs: int = 10, patience: int = 2, lr: float = 1e-3, batch_size: int = 32,
        validation_fraction: float = 0.15, class_weight: str | None = None, random_state: int = 0,
    ) -> None:
        self.encoder_ref = encoder_ref
        self.encoder_id = encoder_id
        self.unfreeze_last = unfreeze_last
        self.encoder_options = encoder_options
        self.max_epochs = max_epochs
        self.patience = patience
        self.lr = lr
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state

    # -- scikit-learn API
    def fit(self, X: Activations, y: np.ndarray, groups: np.ndarray | None = None) -> FineTunedClassifier:
        """Train the top part on cached activations; ``groups`` never straddle the validation slice."""
        torch = require_torch()
        self.check_params()
        self.classes_ = np.unique(y)
        target = torch.from_numpy(np.searchsorted(self.classes_, y))
        fit_rows, held = _validation_split(np.asarray(y), groups, self.validation_fraction, self.random_state)
        rng = np.random.default_rng(self.random_state)
        weight = _class_weights(target[fit_rows], len(self.classes_)) if self.class_weight == "balanced" else None
        with seeded(torch, self.random_state):
            top = self._new_top(len(self.classes_)).to(self._device())
            body = [p for name, p in top.named_parameters() if not name.startswith("classifier.")]
            optimizer = torch.optim.AdamW(
                [{"params": body, "lr": self.lr * ENCODER_LR_FACTOR}, {"params": top["classifier"].parameters(), "lr": self.lr}]
            )
            best, best_state, waited, self.best_epoch_ = math.inf, None, 0, 0
            for epoch in range(1, self.max_epochs + 1):
                _train_mode(top, torch)
                for rows in length_batches(self._lengths(X, fit_rows), self.batch_size, rng):
                    picked = fit_rows[rows]
                    loss = _loss(self._forward(top, X, picked), target[picked], weight)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                held_loss = self._held_loss(top, X, held, target, weight)
                if held_loss < best:
                    best, best_state, waited, self.best_epoch_ = held_loss, copy.deepcopy(top.state_dict()), 0, epoch
                else:
                    waited += 1
                    if waited >= self.patience:
                        break
            top.load_state_dict(best_state)
        self.epochs_run_ = epoch
        self.top_ = top.eval()
        return self

    def predict_proba(self, X: Activations) -> np.ndarray:
        """``(n, n_classes) float64`` class probabilities."""
        check_is_fitted(self, "top_")
        torch = require_torch()
        rows = np.arange(len(X))
        with torch.inference_mode():
            logits = [self._forward(self.top_, X, rows[i : i + 4 * self.batch_size]) for i in range(0, len(rows), 4 * self.batch_size)]
            return torch.cat(logits).softmax(dim=1).double().cpu().numpy()

    def predict(self, X: Activations) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def activations(self, raw: Sequence[str]) -> tuple[Activations, list[str | None]]:
        """The frozen lower part's output for raw inputs (paths or texts), and per input why it failed."""
        self.check_params()
        with require_torch().no_grad():  # not inference_mode: the cache feeds layers that train
            return self._lower(list(raw))

    # -- what the registry saves (safetensors + JSON) and loads back without unpickling
    def state_tensors(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone().contiguous() for k, v in self.top_.state_dict().items()}

    def config(self) -> dict[str, Any]:
        return {"params": self.get_params(), "classes": self.classes_.tolist(), "best_epoch": int(self.best_epoch_)}

    @classmethod
    def from_state(cls, tensors: dict[str, Any], config: dict[str, Any]) -> FineTunedClassifier:
        head = cls(**config["params"])
        head.check_params()
        head.classes_, head.best_epoch_ = np.array(config["classes"]), config["best_epoch"]
        with seeded(require_torch(), head.random_state):  # the fresh classifier's init is overwritten; keep the caller's RNG
            top = head._new_top(len(head.classes_))
        top.load_state_dict(tensors, strict=True)
        head.top_ = top.to(head._device()).eval()
        return head

    def finetuned_encoder_id(self) -> str:
        """The tuned network's own id: the base encoder_id, K and a digest of the tuned layers."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.state_tensors().items()):
            if not name.startswith("classifier."):
                digest.update(name.encode("utf-8") + tensor.numpy().tobytes())
        spec = {"kind": f"{self.encoder().name}-ft", "base": self.encoder_id, "unfreeze_last": self.unfreeze_last,
                "weights": digest.hexdigest()[:16]}
        return encoder_id_from_spec(spec)

    def encoder(self) -> BaseEncoder:
        """The base encoder, once; refused when its encoder_id is not the one fine-tuning started from."""
        if getattr(self, "encoder_", None) is None:
            self.encoder_ = from_meta(self.encoder_ref, self.encoder_options, expect_id=self.encoder_id, owner="the fine-tuned head")
        return self.encoder_

    def check_params(self) -> None:
        depth, what = self._depth()
        k = self.unfreeze_last
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= depth:
            raise FineTuneError(f"unfreeze_last must be an int from 1 to {depth} (the {what} of {self.encoder_ref}). Got {k!r} instead.")
        for name in ("max_epochs", "patience", "batch_size"):
            positive_int(name, getattr(self, name))
        if self.class_weight not in (None, "balanced"):
            raise InvalidArgumentError(f"class_weight must be 'balanced' or None. Got {self.class_weight!r} instead.")

    # -- internals shared by both kinds
    def _device(self) -> str:
        return resolve_device(getattr(self.encoder(), "device", "auto"))

    def _held_loss(self, top: Any, X: Activations, held: np.ndarray, target: Any, weight: Any) -> float:
        torch = require_torch()
        top.eval()
        with torch.inference_mode():
            logits = torch.cat([self._forward(top, X, held[i : i + 4 * self.batch_size]) for i in range(0, len(held), 4 * self.batch_size)])
            return float(_loss(logits, target[held], weight))

    # -- per kind: depth, lower part, top part, forward
    def _depth(self) -> tuple[int, str]:
        raise NotImplementedError

    def _lower(self, raw: list[str]) -> tuple[Activations, list[str | None]]:
        raise NotImplementedError

    def _new_top(self, n_classes: int) -> Any:
        raise NotImplementedError

    def _forward(self, top: Any, X: Activations, rows: np.ndarray) -> Any:
        raise NotImplementedError

    def _lengths(self, X: Activations, rows: np.ndarray) -> list[int]:
        return [0] * len(rows)


class FineTunedImageClassifier(FineTunedClassifier):
    """EfficientNet-Lite0's last K MBConv blocks + conv head + a linear classifier."""

    modality = "image"

    def _depth(self) -> tuple[int, str]:
        from featurestore.encoders.efficientnet import BLOCK_CHANNELS

        return len(BLOCK_CHANNELS), "MBConv blocks"

    def _lower(self, raw: list[str]) -> tuple[Activations, list[str | None]]:
        """Stem + the first 16-K blocks of the encoder's own (BatchNorm-folded, eval) network, once per image."""
        torch = require_torch()
        enc = self.encoder()
        model = enc.model()
        param = next(model.parameters())
        first = self._depth()[0] - self.unfreeze_last
        errors: list[str | None] = [None] * len(raw)
        maps: list[Any] = [None] * len(raw)
        for start in range(0, len(raw), enc.batch_size):
            pixels = {}
            for i in range(start, min(start + enc.batch_size, len(raw))):
                try:
                    pixels[i] = decode_pixels(raw[i], size=enc.size, resize=enc.resize)
                except ImageDecodeError as exc:
                    errors[i] = str(exc)
            if not pixels:
                continue
            x = torch.from_numpy(np.stack(list(pixels.values()))).to(param.device).permute(0, 3, 1, 2)
            x = x.to(param.dtype).sub_(127.0).div_(128.0).contiguous(memory_format=torch.channels_last)
            x = model._swish(model._bn0(model._conv_stem(x)))
            for block in model._blocks[:first]:
                x = block(x)
            for i, fmap in zip(pixels, x.float().cpu().contiguous()):
                maps[i] = fmap
        shape = next((m.shape for m in maps if m is not None), (0,))
        return torch.stack([m if m is not None else torch.zeros(shape) for m in maps]) if raw else torch.zeros(0), errors

    def _new_top(self, n_classes: int) -> Any:
        """The unfolded packaged network's last K blocks and conv head (with BatchNorm), then a fresh classifier."""
        from featurestore.encoders.efficientnet import HEAD_CHANNELS, MODEL, backbone_weights

        torch = require_torch()
        nn = torch.nn
        lite = require("efficientnet_lite_pytorch", "image")
        enc = self.encoder()
        with torch.device("meta"):  # no random init: the weights are assigned
            net = lite.EfficientNet.from_name(MODEL, image_size=enc.size)
        net._fc = nn.Identity()
        net.load_state_dict(backbone_weights(enc.weights), strict=True, assign=True)
        first = self._depth()[0] - self.unfreeze_last
        body = nn.Sequential(*net._blocks[first:], net._conv_head, net._bn1, net._swish, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(HEAD_CHANNELS, n_classes))
        return nn.ModuleDict({"body": body, "classifier": classifier}).requires_grad_(True)

    def _forward(self, top: Any, X: Activations, rows: np.ndarray) -> Any:
        return top["classifier"](top["body"](X[require_torch().from_numpy(rows)].to(self._device())))


class FineTunedTextClassifier(FineTunedClassifier):
    """A sentence-transformers BERT's last K layers + mean pooling + a linear classifier."""

    modality = "text"

    def _bert(self) -> Any:
        enc = self.encoder()
        bert = getattr(enc.model()[0], "auto_model", None)
        if not hasattr(getattr(bert, "encoder", None), "layer"):
            raise FineTuneError(f"{self.encoder_ref} is not a BERT-style model (no encoder.layer); its layers cannot be fine-tuned here")
        return bert

    def _depth(self) -> tuple[int, str]:
        return len(self._bert().encoder.layer), "transformer layers"

    def _lower(self, raw: list[str]) -> tuple[Activations, list[str | None]]:
        """Embeddings + the first L-K layers, longest texts first in batches; each text keeps its own pieces."""
        torch = require_torch()
        enc, bert = self.encoder(), self._bert()
        pieces = enc.model().tokenizer(raw, truncation=True, max_length=enc.max_seq_length)["input_ids"] if raw else []
        first = self._depth()[0] - self.unfreeze_last
        states: list[Any] = [None] * len(raw)
        order = sorted(range(len(raw)), key=lambda i: -len(pieces[i]))
        for start in range(0, len(order), enc.batch_size):
            rows = order[start : start + enc.batch_size]
            ids, mask = _pad([torch.tensor(pieces[i]) for i in rows], torch)
            h = bert.embeddings(input_ids=ids.to(bert.device))
            for layer in bert.encoder.layer[:first]:
                h = _layer(layer, h, mask.to(bert.device))
            for r, i in enumerate(rows):
                states[i] = h[r, : len(pieces[i])].float().cpu().clone()
        return states, ["empty text" if not text.strip() else None for text in raw]

    def _new_top(self, n_classes: int) -> Any:
        """Copies of the last K layers (float32, trainable), then a fresh classifier."""
        nn = require_torch().nn
        bert = self._bert()
        layers = copy.deepcopy(bert.encoder.layer[self._depth()[0] - self.unfreeze_last :]).float()
        classifier = nn.Sequential(nn.Dropout(DROPOUT), nn.Linear(bert.config.hidden_size, n_classes))
        return nn.ModuleDict({"layers": layers, "classifier": classifier}).requires_grad_(True)

    def _forward(self, top: Any, X: Activations, rows: np.ndarray) -> Any:
        torch = require_torch()
        h, mask = _pad([X[i] for i in rows], torch)
        h, mask = h.to(self._device()), mask.to(self._device())
        for layer in top["layers"]:
            h = _layer(layer, h, mask)
        weights = mask.unsqueeze(-1).to(h.dtype)
        return top["classifier"]((h * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0))

    def _lengths(self, X: Activations, rows: np.ndarray) -> list[int]:
        return [len(X[i]) for i in rows]


def _validation_split(y: np.ndarray, groups: np.ndarray | None, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(fit_rows, held_rows)``: a seeded slice of about ``fraction``, stratified, groups kept whole."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < fraction < 0.5:
        raise InvalidArgumentError(f"validation_fraction must be between 0 and 0.5. Got {fraction!r} instead.")
    cv = StratifiedGroupKFold(max(2, round(1 / fraction)), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            return next(cv.split(np.zeros((len(y), 1)), y, groups if groups is not None else np.arange(len(y))))
        except ValueError as exc:
            raise FineTuneError(f"cannot carve a validation slice from {len(y)} training rows: {exc}") from None


def _class_weights(target: Any, n_classes: int) -> Any:
    """scikit-learn's ``balanced``: n / (n_classes * count) per class."""
    counts = require_torch().bincount(target, minlength=n_classes).float()
    return len(target) / (n_classes * counts.clamp(min=1.0))


def _loss(logits: Any, target: Any, weight: Any) -> Any:
    nn = require_torch().nn
    return nn.functional.cross_entropy(logits, target.to(logits.device), weight=None if weight is None else weight.to(logits.device))


def _train_mode(top: Any, torch: Any) -> None:
    """Dropout on, BatchNorm on its pretrained running statistics."""
    top.train()
    for module in top.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()


def _pad(rows: list[Any], torch: Any) -> tuple[Any, Any]:
    """Right-padded ``(b, width, ...)`` batch and its ``(b, width) bool`` mask."""
    width = max(len(r) for r in rows)
    out = torch.zeros((len(rows), width, *rows[0].shape[1:]), dtype=rows[0].dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
        mask[i, : len(r)] = True
    return out, mask


def _layer(layer: Any, h: Any, mask: Any) -> Any:
    """One BERT layer with an additive padding mask (eager and sdpa attention both take it)."""
    torch = require_torch()
    additive = (~mask)[:, None, None, :].to(h.dtype) * torch.finfo(h.dtype).min
    out = layer(h, attention_mask=additive)
    return out[0] if isinstance(out, tuple) else out
