"""The exceptions the feature store raises on purpose.

    FeatureStoreError            base: a problem the user can fix; the CLI prints it, exits 2
     ├── SourceError             the input file: missing, unreadable, malformed, bad column
     ├── EncoderError            unknown encoder, missing weights, wrong input for it
     ├── StoreError              the store: unwritable, view or version not found
     │    ├── NotFoundError        no such view, encoder, entity id, index or model
     │    └── SchemaMismatchError  a table written with another dimension or encoder
     └── DependencyError         an optional extra is not installed

Each carries one message that says what came, what is allowed and what to do. They take a
single string argument, so they pickle across process boundaries (Prefect, Dask).
"""

from __future__ import annotations

__all__ = [
    "DependencyError",
    "EncoderError",
    "FeatureStoreError",
    "NotFoundError",
    "SchemaMismatchError",
    "SourceError",
    "StoreError",
]


class FeatureStoreError(Exception):
    """Base class of every error the user can act on."""


class SourceError(FeatureStoreError):
    """The source file cannot be read as asked (file, line, column named in the message)."""


class EncoderError(FeatureStoreError):
    """An encoder cannot be found, loaded or applied."""


class StoreError(FeatureStoreError):
    """The store cannot be read or written as asked."""


class NotFoundError(StoreError):
    """What was asked for does not exist in the store (the HTTP service answers 404)."""


class SchemaMismatchError(StoreError):
    """A table exists with another dimension, encoder or granularity than the one asked for."""


class DependencyError(FeatureStoreError):
    """An optional dependency is missing; the message names the extra to install."""
