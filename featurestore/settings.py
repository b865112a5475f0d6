"""Where things live: the one module that reads environment variables.

Explicit argument > environment variable > default.

- ``FEATURESTORE_HOME``: the store root (default ``~/.featurestore``).
- ``FEATURESTORE_DATA``: the evaluation data folder used by the demo (default ``../shared/data``
  beside the project checkout).
- ``FEATURESTORE_WORD2VEC``: the vectors behind the ``word2vec`` encoder name.
- ``FEATURESTORE_DEVICE``: ``auto`` (default), ``cpu`` or ``cuda``.
- ``FEATURESTORE_ENCODER_BACKEND``: what runs the sentence encoders (``minilm``, ``st:``):
  ``auto`` (default: ONNX Runtime on CPU when installed and its export passed its check, else
  torch), ``torch`` or ``onnx``; the command line's ``--backend`` sets it.
- ``FEATURESTORE_STORAGE_OPTIONS``: a JSON object of deltalake storage options for a remote
  store root (``s3://`` ...), added to what the object store reads from ``AWS_*`` variables.
- ``FEATURESTORE_WORK_DIR``: where a remote store keeps its local files (indexes, heads, run
  records, locks, staging, read cache), and the template of Prefect's per-process database;
  default ``~/.cache/featurestore``.
- ``FEATURESTORE_CACHE_DIR``: this user's caches that belong to no store (the weights digests of
  encoders); default the work folder above.
- ``FEATURESTORE_LOCK_WAIT``: seconds a writer waits for a table's lock another run holds (default
  0: fail at once, naming the holder); the command line's ``--wait`` sets it.
- ``FEATURESTORE_API_TOKEN``: the bearer token ``featurestore api`` requires (unset: none).
- ``FEATURESTORE_API_MAX_BODY``: the largest request body the service takes, in bytes or with a
  unit (``16MB``, the default); ``FEATURESTORE_API_MAX_VIEWS``: warm views kept per process (8).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from featurestore.errors import InvalidArgumentError, StoreError

_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def lock_wait() -> float:
    """Seconds a writer waits for a lock another run holds (``FEATURESTORE_LOCK_WAIT``, default 0)."""
    text = os.environ.get("FEATURESTORE_LOCK_WAIT", "").strip() or "0"
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise InvalidArgumentError(f"the lock wait (`wait`, FEATURESTORE_LOCK_WAIT) must be a number of seconds >= 0, e.g. 60. Got {text!r} instead.")
    return seconds


def store_root(explicit: str | os.PathLike[str] | None = None) -> str:
    """The store root as a string (a local folder or an fsspec URL)."""
    if explicit:
        return str(explicit)
    env = os.environ.get("FEATURESTORE_HOME")
    if env:
        return env
    return str(Path.home() / ".featurestore")


def storage_options() -> dict[str, str] | None:
    """Storage options for a remote store root, from ``FEATURESTORE_STORAGE_OPTIONS`` (JSON).

    They come from the environment only, so that every process of a run (Prefect tasks, Dask
    workers) opens the tables with the same options without secrets being written to a plan.
    """
    text = os.environ.get("FEATURESTORE_STORAGE_OPTIONS", "").strip()
    if not text:
        return None
    try:
        options = json.loads(text)
    except ValueError as exc:
        raise StoreError(f"FEATURESTORE_STORAGE_OPTIONS is not JSON ({exc}); give an object such as {{\"AWS_REGION\": \"eu-west-1\"}}") from None
    if not isinstance(options, dict):
        raise StoreError("FEATURESTORE_STORAGE_OPTIONS must be a JSON object of option names to values")
    return {str(k): str(v) for k, v in options.items()}


def aws_endpoint_url() -> str | None:
    """The S3 endpoint the AWS tools read (``AWS_ENDPOINT_URL``), for a file system built from explicit options."""
    return os.environ.get("AWS_ENDPOINT_URL") or None


def cache_dir() -> Path:
    """This machine's local folder of the feature store: ``$FEATURESTORE_WORK_DIR`` (or ``~/.cache/featurestore``).

    It holds the work folders of remote stores and files that only save time (Prefect's empty
    database, see :mod:`flows.prefect_api`): deleting it loses nothing.
    """
    base = os.environ.get("FEATURESTORE_WORK_DIR") or str(Path.home() / ".cache" / "featurestore")
    return Path(base).expanduser().absolute()


def user_cache_dir() -> Path:
    """Caches that belong to no store (encoder weights digests): ``$FEATURESTORE_CACHE_DIR``, else :func:`cache_dir`."""
    explicit = os.environ.get("FEATURESTORE_CACHE_DIR")
    return Path(explicit).expanduser().absolute() if explicit else cache_dir()


def work_dir(remote_root: str) -> Path:
    """The local folder of a remote store: :func:`cache_dir` plus a readable name made from the
    root URL and a digest of it, so two remote stores never share one."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", remote_root.replace("://", "-")).strip("_")[:80]
    digest = hashlib.sha256(remote_root.encode()).hexdigest()[:10]
    return cache_dir() / f"{readable}-{digest}"


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


ENCODER_BACKENDS = ("auto", "torch", "onnx")


def encoder_backend(explicit: str | None = None) -> str:
    """The sentence encoders' backend: ``explicit``, else ``$FEATURESTORE_ENCODER_BACKEND``, else ``auto``."""
    from featurestore.errors import EncoderError

    value = explicit if explicit is not None else (os.environ.get("FEATURESTORE_ENCODER_BACKEND", "").strip() or "auto")
    if value not in ENCODER_BACKENDS:
        source = "backend" if explicit is not None else "FEATURESTORE_ENCODER_BACKEND"
        raise EncoderError(f"{source} must be one of {', '.join(ENCODER_BACKENDS)}. Got {value!r} instead.")
    return value


INDEX_TRAIN_SECONDS = 600.0


def index_train_seconds(explicit: float | None = None) -> float:
    """The bound on training one FAISS index, in seconds: past it the build stops with an error."""
    if explicit is not None:
        value: object = explicit
    else:
        value = os.environ.get("FEATURESTORE_INDEX_TRAIN_SECONDS", "").strip() or INDEX_TRAIN_SECONDS
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if isinstance(value, bool) or not seconds > 0 or seconds == float("inf"):
        raise StoreError(f"the index training bound (FEATURESTORE_INDEX_TRAIN_SECONDS) must be a positive number of seconds. Got {value!r} instead.")
    return seconds


SEARCH_CHECK_SECONDS = {"local": 0.01, "remote": 1.0}


def search_check_seconds(*, remote: bool) -> float:
    """How often a warm search handle looks for a newer index or table version, in seconds:
    ``$FEATURESTORE_SEARCH_CHECK_SECONDS``, else 0.01 for a local store (two ``stat`` calls) and
    1 for a bucket (requests); 0 checks on every query."""
    text = os.environ.get("FEATURESTORE_SEARCH_CHECK_SECONDS", "").strip()
    if not text:
        return SEARCH_CHECK_SECONDS["remote" if remote else "local"]
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < float("inf"):
        raise StoreError(f"FEATURESTORE_SEARCH_CHECK_SECONDS must be a number of seconds >= 0 (0: check on every query). Got {text!r} instead.")
    return seconds


def api_token() -> str | None:
    """The bearer token of ``featurestore api`` from ``FEATURESTORE_API_TOKEN`` (None: unset or blank)."""
    return os.environ.get("FEATURESTORE_API_TOKEN", "").strip() or None


def api_max_body(explicit: str | None = None) -> int:
    """The service's request size limit in bytes: ``explicit``, else ``$FEATURESTORE_API_MAX_BODY``, else 16MB."""
    from featurestore.index.choice import parse_bytes

    text = explicit or os.environ.get("FEATURESTORE_API_MAX_BODY") or "16MB"
    try:
        size = parse_bytes(text)
    except InvalidArgumentError:
        size = None
    if size is None or size <= 0:
        raise StoreError(f"FEATURESTORE_API_MAX_BODY must be a positive size such as 16MB or 1048576. Got {text!r} instead.")
    return size


def api_max_views() -> int:
    """``$FEATURESTORE_API_MAX_VIEWS``: warm view handles one service process keeps (8 when unset)."""
    text = os.environ.get("FEATURESTORE_API_MAX_VIEWS") or "8"
    if not text.isdigit() or int(text) < 1:
        raise StoreError(f"FEATURESTORE_API_MAX_VIEWS must be a positive int. Got {text!r} instead.")
    return int(text)
