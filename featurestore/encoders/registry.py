"""Encoders by name: built-ins, ``st:/path``, ``w2v:/path`` and the ``featurestore.encoders`` entry points.

A third-party package adds an encoder with an entry point whose object is a factory
``factory(arg: str | None, **options) -> Encoder``, where ``arg`` is what follows ``name:``::

    [project.entry-points."featurestore.encoders"]
    clip = "my_pkg.encoders:make_clip"
"""

from __future__ import annotations

import difflib
import re
from importlib.metadata import entry_points
from typing import Any, Callable, Mapping

from featurestore import settings
from featurestore.encoders.base import BaseEncoder
from featurestore.errors import EncoderError, FeatureStoreError

ENTRY_POINT_GROUP = "featurestore.encoders"
Factory = Callable[..., BaseEncoder]


def _minilm(arg: str | None, **options: Any) -> BaseEncoder:
    from featurestore.encoders.sentence import SentenceTransformerEncoder, minilm_path

    return SentenceTransformerEncoder(
        arg or minilm_path(), name="minilm", model_name="sentence-transformers/all-MiniLM-L6-v2", **options
    )


def _minilm_int8(arg: str | None, **options: Any) -> BaseEncoder:
    from featurestore.encoders.sentence import SentenceTransformerEncoder, minilm_path

    return SentenceTransformerEncoder(
        arg or minilm_path(), name="minilm-int8", model_name="sentence-transformers/all-MiniLM-L6-v2", int8=True, **options
    )


def _st(arg: str | None, **options: Any) -> BaseEncoder:
    from featurestore.encoders.sentence import SentenceTransformerEncoder

    if not arg:
        raise EncoderError("st: needs a model folder, e.g. `encoder='st:/path/to/model'`")
    return SentenceTransformerEncoder(arg, name="st", **options)


def _word2vec(arg: str | None, **options: Any) -> BaseEncoder:
    from featurestore.encoders.word2vec import Word2VecEncoder

    path = settings.word2vec_path(arg)
    if not path.is_file():
        raise EncoderError(
            f"the default word2vec vectors are not at {path}; set FEATURESTORE_WORD2VEC or use w2v:/path/to/vectors"
        )
    return Word2VecEncoder(path, name="word2vec", **options)


def _w2v(arg: str | None, **options: Any) -> BaseEncoder:
    from featurestore.encoders.word2vec import Word2VecEncoder

    if not arg:
        raise EncoderError("w2v: needs a vectors file, e.g. `encoder='w2v:/path/to/vectors.bin'`")
    return Word2VecEncoder(arg, name="w2v", **options)


def _efficientnet(arg: str | None, **options: Any) -> BaseEncoder:
    from featurestore.encoders.image import make

    return make(arg, **options)


BUILTINS: dict[str, Factory] = {
    "minilm": _minilm,
    "minilm-int8": _minilm_int8,
    "st": _st,
    "word2vec": _word2vec,
    "w2v": _w2v,
    "efficientnet-lite0": _efficientnet,
}
# Names that need an argument after the colon are not listed as ready-made encoders.
_NEEDS_ARG = {"st", "w2v"}


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_encoder(ref: str, **options: Any) -> BaseEncoder:
    """The encoder named by ``ref``: ``minilm``, ``word2vec``, ``st:/path``, ``w2v:/path`` or a plugin.

    Options (``device``, ``batch_size``, ``weighting`` ...) go to the encoder's constructor.
    """
    name, _, arg = ref.partition(":")
    name = name.strip().lower()
    factory: Factory | None = BUILTINS.get(name)
    if factory is None:
        plugin = _plugins().get(name)
        if plugin is not None:
            factory = plugin.load()
    if factory is None:
        known = sorted(set(BUILTINS) | set(_plugins()))
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise EncoderError(
            f"unknown encoder {ref!r}; known: {', '.join(known)} (st:/path and w2v:/path take a path).{hint}"
        )
    try:
        return factory(arg or None, **options)
    except FeatureStoreError:
        raise
    except TypeError as exc:
        unknown = re.search(r"unexpected keyword argument '(\w+)'", str(exc))
        if unknown and unknown.group(1) in options:
            raise EncoderError(f"encoder {name!r} does not take `{unknown.group(1)}`; leave it out or use an encoder that does") from None
        raise EncoderError(f"encoder {name!r} does not take these options: {exc}") from exc


def from_meta(ref: str | None, options: Mapping[str, Any] | None = None, *, expect_id: str, owner: str) -> BaseEncoder:
    """The encoder that ``owner`` recorded as ``ref`` and ``options``, rebuilt; it must still be ``expect_id``.

    The one way to rebuild a stored encoder (a table's, a saved model's, a run plan's), so that
    inputs encoded now meet vectors written then. ``owner`` names the record in messages
    (``"view 'sms'"``, ``"model spam v1"``). Raises :class:`EncoderError` when the record names
    no encoder, when the encoder cannot be built here, or when it now has another id (its
    weights or options changed).
    """
    if not ref:
        raise EncoderError(f"{owner} does not record how to rebuild encoder {expect_id}")
    try:
        enc = get_encoder(ref, **dict(options or {}))
        have = enc.encoder_id
    except (EncoderError, OSError) as exc:
        raise EncoderError(f"{owner} needs encoder {ref!r}, which is not available here: {exc}") from None
    if have != expect_id:
        raise EncoderError(
            f"{owner} expects encoder {expect_id}, but {ref!r} is {have} here; its weights or options differ, "
            "so inputs cannot be encoded the same way"
        )
    return enc


def list_encoders() -> list[dict[str, Any]]:
    """One row per ready-made encoder: name, encoder_id, dim, modality, source (or the reason it is unavailable)."""
    rows: list[dict[str, Any]] = []
    names = [n for n in BUILTINS if n not in _NEEDS_ARG] + sorted(_plugins())
    for name in names:
        try:
            rows.append(get_encoder(name).describe())
        except FeatureStoreError as exc:
            rows.append({"name": name, "encoder_id": None, "dim": None, "modality": None, "source": None, "error": str(exc)})
    return rows
