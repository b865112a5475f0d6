"""The exceptions the feature store, its heads and its flows raise on purpose: all of them.

    FeatureStoreError                base: a problem the user can fix; the CLI prints it, exits 2
     ├── InvalidArgumentError        an argument out of range or not among the choices (also a ValueError)
     ├── SourceError                 the input file: missing, unreadable, malformed, bad column
     │    └── ImageDecodeError        one image file does not decode (the short reason kept for its row)
     ├── EncoderError                unknown encoder, missing weights, wrong input for it
     ├── StoreError                  the store: unwritable, view or version not found
     │    ├── NotFoundError            no such view, encoder, entity id, index or model
     │    ├── SchemaMismatchError      a table written with another dimension or encoder
     │    ├── ViewBusyError            another run holds the view's write lock
     │    └── ModelError               a saved model cannot be found, read or trusted
     │         └── UnknownModelError     no such model or version (also a NotFoundError: HTTP 404)
     ├── ProjectError                the project file: missing, not YAML, or not valid
     ├── FineTuneError               fine-tuning cannot run as asked (no layers to tune, K out of range)
     ├── RefreshFailed               some views of a refresh failed; the others were refreshed
     ├── PrefectUnavailableError     no Prefect API to run a flow on
     └── DependencyError             an optional extra is not installed

Each carries one message that says what came, what is allowed and what to do. They take a
single string argument, so they pickle across process boundaries (Prefect, Dask).

Messages name the library's parameters, never a command-line flag: a parameter is written
between backticks (`` `shard_size` ``, `` `strict=True` ``), and the command line shows each as
its flag (``--shard-size``, ``--strict``) when it prints the message.
"""

from __future__ import annotations

__all__ = [
    "DependencyError",
    "EncoderError",
    "FeatureStoreError",
    "FineTuneError",
    "ImageDecodeError",
    "InvalidArgumentError",
    "ModelError",
    "NotFoundError",
    "PrefectUnavailableError",
    "ProjectError",
    "RefreshFailed",
    "SchemaMismatchError",
    "SourceError",
    "StoreError",
    "UnknownModelError",
    "ViewBusyError",
]


class FeatureStoreError(Exception):
    """Base class of every error the user can act on."""


class InvalidArgumentError(FeatureStoreError, ValueError):
    """An argument is out of range, of the wrong type or not among the allowed choices.

    Also a :class:`ValueError`, as scikit-learn's parameter errors are, so estimator code that
    expects one catches it.
    """


class SourceError(FeatureStoreError):
    """The source file cannot be read as asked (file, line, column named in the message)."""


class ImageDecodeError(SourceError):
    """One image file cannot be decoded; the message is the short reason kept for its row."""


class EncoderError(FeatureStoreError):
    """An encoder cannot be found, loaded or applied."""


class StoreError(FeatureStoreError):
    """The store cannot be read or written as asked."""


class NotFoundError(StoreError):
    """What was asked for does not exist in the store (the HTTP service answers 404)."""


class SchemaMismatchError(StoreError):
    """A table exists with another dimension, encoder or granularity than the one asked for."""


class ViewBusyError(StoreError):
    """Another run holds the view's lock."""


class ModelError(StoreError):
    """A saved model cannot be found, read or trusted (missing, tampered, unknown type)."""


class UnknownModelError(ModelError, NotFoundError):
    """No model, or no such version of it, in the store."""


class ProjectError(FeatureStoreError):
    """The project file is missing, not YAML, or does not validate (file and key path named)."""


class FineTuneError(FeatureStoreError):
    """Fine-tuning cannot run as asked: an encoder with no layers to tune, or K out of range."""


class RefreshFailed(FeatureStoreError):
    """Some views of a refresh failed (the others were refreshed); the message names them and why."""


class PrefectUnavailableError(FeatureStoreError):
    """No Prefect API to run a flow on: the message says why and names the inline runner and PREFECT_API_URL."""


class DependencyError(FeatureStoreError):
    """An optional dependency is missing; the message names the extra to install."""
