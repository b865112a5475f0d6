"""sentence-transformers models (``minilm``, ``st:/path``) through ONNX Runtime: the exported
transformer with its tokenizer and pooling.

What follows the transformer in the module stack (``Pooling``, ``Normalize``) runs in numpy as
sentence-transformers computes it, and texts are tokenized with the ``tokenizers`` library from
the folder's ``tokenizer.json``. So a process that encodes with a cached export imports
onnxruntime, tokenizers and numpy, never torch, transformers or sentence-transformers. A
:class:`Plan` is the :class:`~featurestore.encoders.onnx_backend.Export` of one model: checked on
:data:`CHECK_TEXTS` (short, long, unicode, punctuation, nearly empty) against torch, per token
and pooled; the cache, the check's record and the session are
:mod:`featurestore.encoders.onnx_backend`'s.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from featurestore.encoders.onnx_backend import OPSET, TOLERANCE, Unsupported, session
from featurestore.vectors import l2_normalise

POOLINGS = ("cls", "mean", "max", "mean_sqrt_len_tokens")
LAYERS = ("last", "last4")
# Padded token positions per forward pass: on 1,000 distinct SMS (25 pieces on average) batches
# of 512 positions took 3.5 CPU s against 5.5 s for 64 texts a batch (bench/onnx_encode.py):
# the activations stay in cache and a batch's rows are of nearly one length.
BATCH_TOKENS = 512
# The int8 variant (``minilm-int8``): onnxruntime's dynamic quantization, int8 weights per output
# channel, of every MatMul but the FFN output ones of the first three layers (the ones whose int8
# error cost the most cosine: all MatMuls in int8 gave a mean cosine of 0.990 to fp32 on 300 SMS,
# these three kept in fp32 0.9935). Kept only when the mean cosine of its vectors of CHECK_TEXTS
# to torch's fp32 ones is at least INT8_MIN_MEAN_COS.
INT8_FP32_NODES = tuple(f"/inner/encoder/layer.{i}/output/dense/MatMul" for i in range(3))
INT8_MIN_MEAN_COS = 0.99
INT8 = "int8 dynamic, per channel; FFN output MatMuls of layers 0-2 in fp32"  # the transformer's last hidden layer, or the mean of its last four
# What the export is checked on: short, long (past 256 word pieces: truncated), unicode, punctuation,
# nearly empty, and enough of them for batches with padding.
CHECK_TEXTS: tuple[str, ...] = (
    "hello",
    "a",
    " ",
    "?!",
    "Free entry in 2 a wkly comp to win FA Cup final tkts 21st May 2005. Text FA to 87121 to receive entry question(std txt rate)",
    "Ok lar... Joking wif u oni...",
    "U dun say so early hor... U c already then say...",
    "Héllo wörld — naïve café, São Paulo, Zürich, Ελληνικά, русский текст, 中文字符, 日本語のテキスト, 한국어 🙂🚀",
    "\tTabs\tand\nnew lines\r\n and    spaces   ",
    "WINNER!! As a valued network customer you have been selected to receivea £900 prize reward! To claim call 09061701461.",
    "The boundary layer on a flat plate at zero incidence, with suction and heat transfer, in supersonic flow. " * 12,
    " ".join(f"word{i} and some more text, numbers {i * 7} and punctuation;" for i in range(120)),
    "x" * 600,
    "I'm gonna be home soon and i don't want to talk about this stuff anymore tonight, k? I've cried enough today.",
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
)

@dataclass(frozen=True)
class Plan:
    """What runs around the exported transformer: tokenization, pooling, normalisation."""

    folder: Path
    pooling: str  # one of POOLINGS
    normalize: bool  # the model stack ends with Normalize
    max_length: int
    lowercase: bool
    layers: str = "last"  # one of LAYERS: the states the graph puts out (token vectors may ask for last4)
    int8: bool = False  # the quantized variant (INT8): checked by its mean cosine to torch's fp32 vectors

    @property
    def figure(self) -> str:
        return "one_minus_mean_cos" if self.int8 else "max_abs_cos_minus_1"

    @property
    def tolerance(self) -> float:
        return round(1.0 - INT8_MIN_MEAN_COS, 6) if self.int8 else TOLERANCE

    def key_parts(self) -> dict[str, Any]:
        from featurestore.encoders.base import file_digest

        parts = {
            "tokenizer": file_digest(self.folder / "tokenizer.json"),
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "lowercase": self.lowercase,
        }
        if self.layers != "last":  # the last layer's export keeps the key it had before token vectors used it
            parts["layers"] = self.layers
        if self.int8:
            parts["quantization"] = {"what": INT8, "fp32": INT8_FP32_NODES}
        return parts

    def sidecar_parts(self) -> dict[str, Any]:
        return {"pooling": self.pooling, "normalize": self.normalize, "max_length": self.max_length, "layers": self.layers,
                **({"quantization": INT8} if self.int8 else {})}

    def write(self, torch_model: Any, path: Path) -> None:
        if not self.int8:
            _export_transformer(torch_model, path, self.layers)
            return
        from onnxruntime.quantization import QuantType, quantize_dynamic

        fp32 = path.with_name(f"fp32-{path.name}")
        _export_transformer(torch_model, fp32, self.layers)
        logging.disable(logging.WARNING)  # its advice on the root logger to pre-process the model first
        try:
            quantize_dynamic(
                str(fp32), str(path), per_channel=True, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"],
                nodes_to_exclude=list(INT8_FP32_NODES),
            )
        finally:
            logging.disable(logging.NOTSET)
        fp32.unlink()

    def build(self, model_bytes: bytes) -> OnnxSentenceModel:
        return OnnxSentenceModel(self, model_bytes)

    def compare(self, onnx_model: Any, torch_model: Any) -> tuple[float, int, str]:
        if self.int8:
            return 1.0 - float(_cosines(onnx_model, torch_model).mean()), len(CHECK_TEXTS), "texts"
        worst = _compare_states(onnx_model, torch_model, self.layers)
        if self.layers == "last":  # the pooled vectors too: what sentence encoders store
            worst = max(worst, _compare(onnx_model, torch_model))
        return worst, len(CHECK_TEXTS), "texts"


def plan(folder: Path, config: dict[str, Any], *, layers: str = "last", int8: bool = False) -> Plan:
    """The ONNX plan of a sentence-transformers folder, or :class:`Unsupported` with the reason.

    Only ``Transformer -> Pooling [-> Normalize]`` is reproduced; a Dense layer, a custom module
    or a pooling mode other than one of :data:`POOLINGS` keeps the model on torch. ``layers``
    (one of :data:`LAYERS`) is what the graph puts out per token: token vectors may ask for the
    mean of the last four layers, which gives an export of its own; ``int8`` the quantized variant.
    """
    modules = list(config["modules"])
    if modules not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise Unsupported(f"its modules are {' -> '.join(modules) or 'none'}; the ONNX backend runs Transformer -> Pooling [-> Normalize] only")
    if not (folder / "tokenizer.json").is_file():
        raise Unsupported("it has no tokenizer.json (a fast tokenizer's file)")
    pooling = _pooling_mode(folder)
    return Plan(
        folder=folder, pooling=pooling, normalize=modules[-1] == "Normalize", max_length=int(config["max_seq_length"]),
        lowercase=bool(config["lowercase"]), layers=layers, int8=int8,
    )


def _pooling_mode(folder: Path) -> str:
    """The one pooling mode of the folder's Pooling config (old ``pooling_mode_*`` flags or ``pooling_mode``)."""
    modules = json.loads((folder / "modules.json").read_text())
    path = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")), "")
    try:
        cfg = json.loads((folder / path / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise Unsupported(f"its pooling config cannot be read ({exc})") from None
    legacy = {
        "pooling_mode_cls_token": "cls",
        "pooling_mode_mean_tokens": "mean",
        "pooling_mode_max_tokens": "max",
        "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
        "pooling_mode_weightedmean_tokens": "weightedmean",
        "pooling_mode_lasttoken": "lasttoken",
    }
    if "pooling_mode" in cfg:
        given = cfg["pooling_mode"]
        modes = [given] if isinstance(given, str) else list(given)
    else:
        modes = [name for key, name in legacy.items() if cfg.get(key) is True]
    if cfg.get("include_prompt", True) is not True:
        raise Unsupported("its pooling leaves out prompt tokens (include_prompt false)")
    if len(modes) != 1 or modes[0] not in POOLINGS:
        raise Unsupported(f"its pooling is {'+'.join(map(str, modes)) or 'none'}; the ONNX backend pools with one of {', '.join(POOLINGS)}")
    return modes[0]


class Tokenizer:
    """The folder's ``tokenizer.json`` through the ``tokenizers`` library, truncated to the
    model's ``max_seq_length`` as sentence-transformers does (padding is done per batch)."""

    def __init__(self, plan: Plan) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        try:
            tok = RustTokenizer.from_file(str(plan.folder / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises its own exception type on a bad file
            raise Unsupported(f"its tokenizer.json cannot be read ({str(exc)[:200]})") from None
        tok.no_padding()
        tok.no_truncation()
        self.plain = tok  # no truncation, no special tokens: counts for the store's n_tokens / n_oov
        self._tok = RustTokenizer.from_str(tok.to_str())
        self._tok.enable_truncation(max_length=plan.max_length)
        self.lowercase = plan.lowercase
        self.pad_id = _special_id(plan.folder, tok, "pad_token", "[PAD]")
        self.unk_id = _special_id(plan.folder, tok, "unk_token", "[UNK]")

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's ids with special tokens, truncated to the model's window."""
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        return [enc.ids for enc in self._tok.encode_batch(texts, add_special_tokens=True)]

    def pieces(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's word-piece ids without special tokens or truncation."""
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        return [enc.ids for enc in self.plain.encode_batch(texts, add_special_tokens=False)]

    def split(self, texts: Sequence[Any], *, words: bool = False) -> list[tuple[list[int], list[int | None], list[tuple[int, int]]]]:
        """Per text (``words``: per list of words), as it is (no lowercasing), without special tokens or
        truncation: its piece ids, each piece's word index and character span (what transformers'
        tokenizer gives as ``input_ids``, ``word_ids()`` and ``offset_mapping``)."""
        found = self.plain.encode_batch([list(t) for t in texts] if words else list(texts), is_pretokenized=words, add_special_tokens=False)
        return [(enc.ids, enc.word_ids, enc.offsets) for enc in found]

    def specials(self) -> tuple[list[int], list[int]]:
        """The ids put before and after one sequence (BERT: ``[CLS]`` and ``[SEP]``)."""
        enc = self.plain.encode(["a"], is_pretokenized=True, add_special_tokens=True)
        word_ids = enc.word_ids
        first = word_ids.index(0)
        last = len(word_ids) - 1 - word_ids[::-1].index(0)
        return enc.ids[:first], enc.ids[last + 1 :]


def _special_id(folder: Path, tok: Any, key: str, default: str) -> int | None:
    token: Any = default
    try:
        cfg = json.loads((folder / "tokenizer_config.json").read_text())
        token = cfg.get(key) or default
    except (OSError, ValueError):
        pass
    if isinstance(token, dict):
        token = token.get("content", default)
    found = tok.token_to_id(str(token))
    return int(found) if found is not None else (0 if key == "pad_token" else None)


def pool(states: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """sentence-transformers' Pooling (and Normalize) in numpy: ``states (n, L, d)``, ``mask (n, L)``."""
    m = mask[:, :, None].astype(np.float32)
    if mode == "cls":
        out = states[:, 0]
    elif mode == "max":
        out = np.where(m > 0, states, -np.inf).max(axis=1)
    else:
        total = (states * m).sum(axis=1)
        count = np.maximum(m.sum(axis=1), 1e-9)
        out = total / (np.sqrt(count) if mode == "mean_sqrt_len_tokens" else count)
    out = np.ascontiguousarray(out, dtype=np.float32)
    if normalize:
        l2_normalise(out, eps=1e-12)
    return out


class OnnxSentenceModel:
    """An exported transformer with its tokenizer and pooling: ``encode(texts) -> (n, dim) float32``."""

    def __init__(self, plan: Plan, model_bytes: bytes, *, n_threads: int | None = None) -> None:
        self.plan = plan
        self.tokenizer = Tokenizer(plan)
        self.session = session(model_bytes, n_threads=n_threads)
        self._inputs = {i.name for i in self.session.get_inputs()}

    def encode(self, texts: Sequence[str], batch_size: int = 64, *, normalize: bool = False) -> np.ndarray:
        """``(n, dim) float32``: the model's own vectors (its Normalize included), L2-normalised
        again when ``normalize`` (sentence-transformers' ``normalize_embeddings``)."""
        texts = list(texts)
        out: np.ndarray | None = None
        for rows, mask, states in self._run(self.tokenizer.ids(texts), batch_size):
            vectors = pool(states, mask, self.plan.pooling, self.plan.normalize or normalize)
            if out is None:
                out = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
        return out if out is not None else np.zeros((0, 0), dtype=np.float32)

    def states(self, segments: Sequence[Sequence[int]], batch_size: int = 64) -> Iterator[tuple[int, np.ndarray]]:
        """``(k, (len(segments[k]), dim) float32)``: the per-token states (the plan's ``layers``) of
        each id sequence (special tokens included, at most the model's window), longest first."""
        for rows, _, states in self._run(segments, batch_size):
            for r, k in enumerate(rows):
                yield k, states[r, : len(segments[k])]

    def _run(self, ids: Sequence[Sequence[int]], batch_size: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
        """``(rows, mask, states)`` per batch of :func:`padded_batches`."""
        for rows, batch, mask in padded_batches(ids, batch_size, self.tokenizer.pad_id or 0):
            feeds = {"input_ids": batch, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feeds["token_type_ids"] = np.zeros_like(batch)
            (states,) = self.session.run(["token_embeddings"], feeds)
            yield rows, mask, states


def padded_batches(ids: Sequence[Sequence[int]], batch_size: int, pad_id: int) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """``(rows, ids (b, width) int64, mask (b, width) int64)``: the sequences longest first (as
    sentence-transformers sorts them), each batch padded to its own longest and holding at most
    ``batch_size`` rows and :data:`BATCH_TOKENS` padded positions (one row when it is longer), so
    short texts go in many small batches of near-equal length; ``rows`` are the positions in ``ids``."""
    order = sorted(range(len(ids)), key=lambda k: -len(ids[k]))
    start = 0
    while start < len(order):
        width = len(ids[order[start]])
        rows = order[start : start + max(1, min(batch_size, BATCH_TOKENS // max(width, 1)))]
        start += len(rows)
        batch = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, k in enumerate(rows):
            batch[r, : len(ids[k])] = ids[k]
            mask[r, : len(ids[k])] = 1
        yield rows, batch, mask


def _export_transformer(model: Any, path: Path, layers: str = "last") -> None:
    """The SentenceTransformer's transformer, ids and mask in, token embeddings out (the last
    layer's, or with ``layers="last4"`` the mean of the last four), dynamic batch and length."""
    import warnings

    import torch

    transformer = model[0].auto_model

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return hidden_states(self.inner(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=layers != "last"), layers)

    wrapper = TokenEmbeddings(transformer).eval()
    ids = torch.ones((2, 8), dtype=torch.int64)
    mask = torch.ones((2, 8), dtype=torch.int64)
    axes = {0: "batch", 1: "sequence"}
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notices: the check below is what tells
        torch.onnx.export(
            wrapper,
            (ids, mask),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["token_embeddings"],
            dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_embeddings": axes},
            opset_version=OPSET,
            dynamo=False,
        )


def hidden_states(result: Any, layers: str) -> Any:
    """The per-token states ``layers`` names from a transformers model's output: the last hidden
    layer, or the mean of the last four (``last4``; the output holds ``hidden_states``)."""
    import torch

    return result.last_hidden_state if layers == "last" else torch.stack(result.hidden_states[-4:]).mean(dim=0)


def _compare_states(onnx_model: OnnxSentenceModel, torch_model: Any, layers: str) -> float:
    """max |cos - 1| between the two backends' per-token states of :data:`CHECK_TEXTS` (ONNX in
    batches of 4, padding included; torch one text at a time), over every token."""
    import torch

    ids = onnx_model.tokenizer.ids(CHECK_TEXTS)
    transformer = torch_model[0].auto_model
    worst = 0.0
    with torch.inference_mode():
        for k, got in onnx_model.states(ids, batch_size=4):
            row = torch.tensor([ids[k]], dtype=torch.int64)
            result = transformer(input_ids=row, attention_mask=torch.ones_like(row), output_hidden_states=layers != "last")
            want = hidden_states(result, layers)[0].float().numpy()
            cos = (got * want).sum(axis=1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
            worst = max(worst, float(np.abs(cos - 1.0).max()))
    return worst


def _compare(onnx_model: OnnxSentenceModel, torch_model: Any) -> float:
    """max |cos - 1| between the two backends' vectors of :data:`CHECK_TEXTS` (batches of 4: padding included)."""
    return float(np.abs(_cosines(onnx_model, torch_model) - 1.0).max())


def _cosines(onnx_model: OnnxSentenceModel, torch_model: Any) -> np.ndarray:
    """Per text of :data:`CHECK_TEXTS`, the cosine of the two backends' vectors (batches of 4)."""
    got = onnx_model.encode(CHECK_TEXTS, batch_size=4)
    want = torch_model.encode(list(CHECK_TEXTS), batch_size=4, convert_to_numpy=True, show_progress_bar=False)
    return (got * want).sum(axis=1) / np.maximum(np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1), 1e-12)
