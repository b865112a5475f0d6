"""The encoder protocol and what every encoder shares: a content-addressed id and a device.

An encoder turns a batch of inputs into a ``(n, dim) float32`` matrix. Its ``spec`` is a
JSON-able dict naming everything that changes the vectors (model, weights digest,
preprocessing, pooling, normalisation, dim); ``encoder_id`` is a short hash of that spec, so
two encoders with the same id give the same vectors and vectors of different ids never meet.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from featurestore.errors import InvalidArgumentError
from featurestore.extras import require

Modality = Literal["text", "image", "tokens"]
Granularity = Literal["sentence", "token", "image"]
Metric = Literal["cosine", "l2"]
# The encoders' option types: the encoders check them, the project file and the CLI take them as they are.
TextGranularity = Literal["sentence", "token"]
Layers = Literal["last", "last4"]
Subword = Literal["first", "mean"]
LongText = Literal["truncate", "windows"]
Tta = Literal["none", "flip", "flip5crop"]


@dataclass
class EncodeResult:
    """Vectors plus per-input accounting.

    ``vectors`` is ``(n, dim) float32``; ``n_tokens`` and ``n_oov`` are ``(n,) int64`` counts
    (``n_oov`` is all zeros for encoders with no vocabulary); ``zero`` marks inputs that had
    nothing the encoder knew and got the zero vector.
    """

    vectors: np.ndarray
    n_tokens: np.ndarray
    n_oov: np.ndarray
    zero: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    errors: list[str | None] | None = None  # per input: why it could not be encoded (its row is not stored)


@dataclass
class TokenEncodeResult:
    """One vector per word.

    Per input text: ``tokens`` lists ``(token, char_start, char_end)`` into that text,
    ``vectors`` is ``(n_tokens, dim) float32`` and ``oov`` is ``(n_tokens,) bool``.
    """

    tokens: list[list[tuple[str, int, int]]]
    vectors: list[np.ndarray]
    oov: list[np.ndarray]


@runtime_checkable
class Encoder(Protocol):
    """What the store needs from an encoder."""

    name: str
    modality: Modality
    metric: Metric

    @property
    def dim(self) -> int: ...

    @property
    def spec(self) -> dict[str, Any]: ...

    @property
    def encoder_id(self) -> str: ...

    def encode(self, batch: Sequence[Any]) -> np.ndarray: ...


class BaseEncoder:
    """Shared machinery: ``encoder_id`` from ``spec``, ``describe`` and a default ``encode_with_stats``."""

    name: str = "encoder"
    modality: Modality = "text"
    metric: Metric = "cosine"
    granularity: Granularity = "sentence"  # "token": one row per word via encode_tokens

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def spec(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def encoder_id(self) -> str:
        return encoder_id_from_spec(self.spec)

    @property
    def source(self) -> str:
        """Where the weights come from, for people (a path or a package name)."""
        return ""

    def encode(self, batch: Sequence[Any]) -> np.ndarray:
        raise NotImplementedError

    def load(self) -> None:
        """Load the weights now (they load lazily on the first ``encode`` otherwise)."""

    def encode_with_stats(self, batch: Sequence[Any]) -> EncodeResult:
        vectors = self.encode(batch)
        n = len(batch)
        return EncodeResult(
            vectors=vectors,
            n_tokens=np.zeros(n, dtype=np.int64),
            n_oov=np.zeros(n, dtype=np.int64),
            zero=np.zeros(n, dtype=bool),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "encoder_id": self.encoder_id,
            "dim": self.dim,
            "modality": self.modality,
            "granularity": self.granularity,
            "metric": self.metric,
            "source": self.source,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, encoder_id={self.encoder_id!r})"


class BackendChoice:
    """What computes an encoder's vectors: a checked ONNX Runtime model or torch, decided once on
    first use by the encoder's ``_choose_backend()`` (``(ONNX model or None, why torch)``)."""

    _backend: tuple[Any, str | None] | None = None

    def _choose_backend(self) -> tuple[Any, str | None]:
        raise NotImplementedError

    @property
    def backend(self) -> str:
        """``onnx`` or ``torch`` (decided, and weights loaded, on first call)."""
        return "onnx" if self._onnx() is not None else "torch"

    @property
    def backend_reason(self) -> str | None:
        """Why this encoder runs on torch (None when it runs through ONNX)."""
        self._onnx()
        return self._backend[1] if self._backend else None

    def _onnx(self) -> Any:
        """The checked ONNX model this encoder's vectors come from, or None (torch)."""
        if self._backend is None:
            self._backend = self._choose_backend()
        return self._backend[0]


def encoder_id_from_spec(spec: dict[str, Any]) -> str:
    """``<kind>-<10 hex>``: readable, and a hash of the canonical JSON of the whole spec."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:10]
    return f"{spec.get('kind', 'enc')}-{digest}"


_DIGESTS: dict[tuple[str, int, int], str] = {}
DIGEST_CACHE = "weights-digests.json"


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a weights file (first 16 hex), computed once per (path, size, mtime_ns).

    Kept in this process and in ``weights-digests.json`` under :func:`settings.cache_dir`, so a
    new process (a one-query ``featurestore search``) does not hash ~90 MB of weights again to
    confirm an encoder id. A file rewritten in place gets a new mtime, hence a new digest.
    """
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        cached = _read_digests()
        name = f"{key[0]}|{key[1]}|{key[2]}"
        if isinstance(cached.get(name), str):
            _DIGESTS[key] = cached[name]
        else:
            from featurestore.sources.content import file_sha256  # not at import: it imports the sources package

            _DIGESTS[key] = file_sha256(p)[:16]
            _write_digest(name, _DIGESTS[key])
    return _DIGESTS[key]


def _read_digests() -> dict[str, Any]:
    from featurestore import settings

    try:
        data = json.loads((settings.user_cache_dir() / DIGEST_CACHE).read_text())
    except (OSError, ValueError):  # none yet, or damaged: hashing again is the safe answer
        return {}
    return data if isinstance(data, dict) else {}


def _write_digest(name: str, digest: str) -> None:
    """Add one entry (temporary file, then renamed: concurrent writers lose an entry, never the file).
    An unwritable cache folder is no error: the digest is then computed once per process."""
    import uuid

    from featurestore import settings

    folder = settings.user_cache_dir()
    entries = {k: v for k, v in _read_digests().items() if not k.startswith(name.rsplit("|", 2)[0] + "|")}  # drop stale versions of the file
    entries[name] = digest
    tmp = folder / f".{DIGEST_CACHE}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(entries, indent=0, sort_keys=True))
        os.replace(tmp, folder / DIGEST_CACHE)
    except OSError:
        if tmp.is_file():  # written but not renamed; is_file is False (not an error) under a non-folder
            tmp.unlink()


def check_device(requested: str) -> str:
    """Validate a device name early (before any work): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    import re

    from featurestore.errors import EncoderError

    if requested in ("auto", "cpu"):
        return requested
    if not re.fullmatch(r"cuda(:\d+)?", requested or ""):
        raise InvalidArgumentError(f"device must be one of auto, cpu, cuda, cuda:N. Got {requested!r} instead.")
    torch = require("torch", "text")
    if not torch.cuda.is_available():
        raise EncoderError(f"device {requested!r} asked for, but torch sees no CUDA device here; use `device='auto'` or `device='cpu'`")
    return requested


def resolve_device(requested: str = "auto") -> str:
    """``auto`` means CUDA when torch sees one, else CPU."""
    if requested != "auto":
        return requested
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is part of the text extra
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"
