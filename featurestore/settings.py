"""Where things live: the one module that reads environment variables.

Explicit argument > environment variable > default.

- ``FEATURESTORE_HOME``: the store root (default ``~/.featurestore``).
- ``FEATURESTORE_DATA``: the evaluation data folder used by the demo (default ``../shared/data``
  beside the project checkout).
- ``FEATURESTORE_WORD2VEC``: the vectors behind the ``word2vec`` encoder name.
- ``FEATURESTORE_DEVICE``: ``auto`` (default), ``cpu`` or ``cuda``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def store_root(explicit: str | os.PathLike[str] | None = None) -> str:
    """The store root as a string (a local folder or an fsspec URL)."""
    if explicit:
        return str(explicit)
    env = os.environ.get("FEATURESTORE_HOME")
    if env:
        return env
    return str(Path.home() / ".featurestore")


def data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The folder of real evaluation data sets (spam, ner, search, images, wordvecs)."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("FEATURESTORE_DATA")
    if env:
        return Path(env)
    return _PROJECT_ROOT.parent / "shared" / "data"


def word2vec_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The default word vectors for the ``word2vec`` encoder."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("FEATURESTORE_WORD2VEC")
    if env:
        return Path(env)
    return data_dir() / "wordvecs" / "word2vec_100d" / "word2vec-100d.bin"


def device(explicit: str | None = None) -> str:
    """The requested device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    return explicit or os.environ.get("FEATURESTORE_DEVICE") or "auto"
