"""Training manifests: what a head was trained on, in one typed shape for every head.

A :class:`TrainingManifest` names the table versions a training set read, the arguments that
built it and the hash of its content, so that :func:`featurestore.training.training_set_from_manifest`
rebuilds the identical set later and :func:`models.registry.needs_retrain` tells when a head
is stale. :func:`make_manifest` is its one builder (training sets, the NER heads' sentences, the
ranking head's judgments) and :meth:`TrainingManifest.from_dict` its strict reader: a manifest
from someone else's store is data, checked field by field, never code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from featurestore.errors import StoreError

if TYPE_CHECKING:
    from featurestore.store import FeatureTable

__all__ = ["MANIFEST_FORMAT", "TableVersion", "TrainingManifest", "encoder_entry", "make_manifest"]

MANIFEST_FORMAT = 2
# Who built the set a manifest describes: training_set() (features joined to labels), the NER heads
# (a token view's sentences) or the ranking head (judged queries over a view's documents).
MANIFEST_KINDS = ("training_set", "sentences", "judgments")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class TableVersion:
    """One table a training set read: the view, the encoder id and the Delta version."""

    view: str
    encoder_id: str
    version: int


@dataclass
class TrainingManifest:
    """What a head was trained on: enough to rebuild the identical set and to tell when it is stale.

    ``tables`` every table read at its version (the first is the view the head trains on);
    ``arguments`` what the set was built with; ``content_sha256`` the identity of its rows and
    labels; ``rows`` how many; ``kind`` who built it (:data:`MANIFEST_KINDS`). A set from
    :func:`training_set` also records ``dim``, ``labels`` (where they came from, the class
    counts) and ``features_sha256``; ``details`` holds what a head adds (e.g. sentence counts).
    The JSON on disk is :meth:`to_dict`; :meth:`from_dict` reads it back strictly.
    """

    view: str
    tables: list[TableVersion]
    arguments: dict[str, Any]
    content_sha256: str
    rows: int
    kind: str = "training_set"
    dim: int | None = None
    labels: dict[str, Any] | None = None
    features_sha256: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    format: int = MANIFEST_FORMAT

    def versions(self, view: str | None = None) -> dict[str, int]:
        """Encoder id -> table version of the tables of ``view`` (default: the view trained on)."""
        view = self.view if view is None else view
        return {t.encoder_id: t.version for t in self.tables if t.view == view}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "kind": self.kind,
            "view": self.view,
            "tables": [{"view": t.view, "encoder_id": t.encoder_id, "version": t.version} for t in self.tables],
            "rows": self.rows,
            "arguments": dict(self.arguments),
            "content_sha256": self.content_sha256,
        }
        for key in ("dim", "labels", "features_sha256"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.details:
            out["details"] = dict(self.details)
        return out

    @classmethod
    def from_dict(cls, data: Any) -> TrainingManifest:
        """The manifest a JSON object describes; anything else (a foreign or damaged object) is a
        :class:`StoreError` naming the first field that is wrong. Nothing in it is imported or run."""
        if not isinstance(data, Mapping):
            raise StoreError(f"the training manifest is not a JSON object (got {type(data).__name__})")
        known = {"format", "kind", "view", "tables", "rows", "arguments", "content_sha256", "dim", "labels", "features_sha256", "details"}
        extra = sorted(str(k) for k in data if k not in known)
        if extra:
            raise StoreError(f"the training manifest holds unknown field {extra[0]!r}; it was not written by this version")
        if data.get("format") != MANIFEST_FORMAT:
            raise StoreError(f"the training manifest has format {data.get('format')!r}; this version reads format {MANIFEST_FORMAT}")
        kind = _field(data, "kind", str)
        if kind not in MANIFEST_KINDS:
            raise StoreError(f"the training manifest's `kind` is {kind!r}; it must be one of: {', '.join(MANIFEST_KINDS)}")
        tables = _field(data, "tables", list)
        if not tables:
            raise StoreError("the training manifest's `tables` is empty; it names at least the table trained on")
        parsed = []
        for i, entry in enumerate(tables):
            if not isinstance(entry, Mapping) or set(entry) != {"view", "encoder_id", "version"}:
                raise StoreError(f"the training manifest's `tables[{i}]` is not an object of view, encoder_id and version")
            parsed.append(TableVersion(_field(entry, "view", str, f"tables[{i}]."), _field(entry, "encoder_id", str, f"tables[{i}]."),
                                       _field(entry, "version", int, f"tables[{i}].")))
        digest = _field(data, "content_sha256", str)
        if not _SHA256.fullmatch(digest):
            raise StoreError("the training manifest's `content_sha256` is not a sha256 (64 hex digits)")
        features = data.get("features_sha256")
        if features is not None and not (isinstance(features, str) and _SHA256.fullmatch(features)):
            raise StoreError("the training manifest's `features_sha256` is not a sha256 (64 hex digits)")
        dim = data.get("dim")
        if dim is not None:
            dim = _field(data, "dim", int)
        labels = data.get("labels")
        if labels is not None:
            labels = dict(_field(data, "labels", Mapping))
        return cls(
            view=_field(data, "view", str), tables=parsed, arguments=dict(_field(data, "arguments", Mapping)), content_sha256=digest,
            rows=_field(data, "rows", int), kind=kind, dim=dim, labels=labels, features_sha256=features,
            details=dict(_field(data, "details", Mapping)) if "details" in data else {},
        )


def _field(data: Mapping[str, Any], key: str, kind: type, where: str = "") -> Any:
    """``data[key]`` when it is a ``kind`` (an int is never a bool, and never negative)."""
    value = data.get(key)
    ok = isinstance(value, kind) and not (kind is int and (isinstance(value, bool) or value < 0))
    if not ok:
        what = {str: "a string", int: "a whole number >= 0", list: "a list"}.get(kind, "an object")
        raise StoreError(f"the training manifest's `{where}{key}` must be {what}; got {_shown(value)}")
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def make_manifest(
    tables: Sequence[tuple[FeatureTable, int]],
    *,
    arguments: Mapping[str, Any],
    content_sha256: str,
    rows: int,
    kind: str = "training_set",
    **recorded: Any,
) -> TrainingManifest:
    """The :class:`TrainingManifest` of a set read from ``tables`` (each with the version read; the
    first is the view trained on). ``recorded``: ``dim``, ``labels``, ``features_sha256``, ``details``."""
    return TrainingManifest(
        view=tables[0][0].meta.view,
        tables=[TableVersion(t.meta.view, t.meta.encoder_id, int(v)) for t, v in tables],
        arguments=dict(arguments),
        content_sha256=content_sha256,
        rows=int(rows),
        kind=kind,
        **recorded,
    )


def encoder_entry(table: FeatureTable | None = None, *, encoder: Any = None, view: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``encoders`` entry of a TrainResult: how to rebuild an encoder whose features a head reads.

    From its table's metadata, or, for features encoded while training (no table), from the
    ``encoder`` object itself and the ``view`` it stands for. ``extra`` adds or overrides keys
    (a fine-tuned network's own id and its base encoder).
    """
    if table is not None:
        meta = table.meta
        entry = {"view": meta.view, "encoder_id": meta.encoder_id, "encoder_ref": meta.encoder_ref,
                 "encoder_options": dict(meta.encoder_options or {}), "dim": meta.dim}
    else:
        entry = {"view": view, "encoder_id": encoder.encoder_id, "encoder_ref": encoder.name, "encoder_options": {}, "dim": encoder.dim}
    return {**entry, **extra}
