"""What every source yields: column-wise batches of hashed records, and how sources travel.

A source is any object with ``modality``, ``keep``, ``path``, ``batches(batch_size)`` and
``describe()``; ``to_dict``/``from_dict`` turn it into plain JSON for flow parameters and plans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterator, Protocol, TypeVar

from featurestore.errors import SourceError


@dataclass
class SourceBatch:
    """Records of one batch, column-wise.

    ``content`` is what the encoder receives: the normalised text, or the file path of an
    image. ``tokens`` holds pre-tokenised sentences (CoNLL) and is None when the encoder
    tokenises itself. ``reason[i]`` is None for a good row, else why the row is skipped.
    """

    line: list[int] = field(default_factory=list)
    entity_id: list[str] = field(default_factory=list)
    content: list[str] = field(default_factory=list)
    content_hash: list[str] = field(default_factory=list)
    event_timestamp: list[datetime | None] = field(default_factory=list)
    keep: dict[str, list[Any]] = field(default_factory=dict)
    reason: list[str | None] = field(default_factory=list)
    tokens: list[list[str]] | None = None

    def __len__(self) -> int:
        return len(self.line)

    def add(
        self,
        line: int,
        entity_id: str,
        content: str,
        content_hash: str,
        kept: Mapping[str, Any],
        *,
        event_timestamp: datetime | None = None,
        reason: str | None = None,
        tokens: list[str] | None = None,
    ) -> None:
        """Append one record; ``kept`` holds its value of each kept column (a missing one is None)."""
        self.line.append(line)
        self.entity_id.append(entity_id)
        self.content.append(content)
        self.content_hash.append(content_hash)
        self.event_timestamp.append(event_timestamp)
        for column, values in self.keep.items():
            values.append(kept.get(column))
        self.reason.append(reason)
        if self.tokens is not None:
            self.tokens.append(tokens)  # type: ignore[arg-type]


R = TypeVar("R")


def batched(
    records: Iterable[R],
    add: Callable[[SourceBatch, R], None],
    batch_size: int,
    keep: Sequence[str],
    *,
    tokens: bool = False,
    empty: str | None = None,
) -> Iterator[SourceBatch]:
    """``records`` in batches of ``batch_size``, each put in by ``add(batch, record)``; ``tokens``
    gives the batches a tokens column. ``empty``, when given, is the :class:`SourceError`
    raised when there are no records."""

    def new() -> SourceBatch:
        return SourceBatch(keep={c: [] for c in keep}, tokens=[] if tokens else None)

    batch, seen = new(), 0
    for record in records:
        seen += 1
        add(batch, record)
        if len(batch) >= batch_size:
            yield batch
            batch = new()
    if seen == 0 and empty is not None:
        raise SourceError(empty)
    if len(batch):
        yield batch


class Source(Protocol):
    modality: str  # "text" | "image" | "tokens"
    path: str
    keep: tuple[str, ...]

    def batches(self, batch_size: int = 10_000) -> Iterator[SourceBatch]: ...

    def describe(self) -> dict[str, Any]: ...


_KINDS: dict[str, str] = {
    "text": "featurestore.sources.text:TextSource",
    "image": "featurestore.sources.images:ImageSource",
    "conll": "featurestore.sources.conll:ConllSource",
}


def to_dict(source: Any) -> dict[str, Any]:
    """A JSON-able description of a source (a dataclass) that :func:`from_dict` rebuilds."""
    return {"kind": source.kind, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(source).items()}}


def from_dict(data: dict[str, Any]) -> Any:
    import importlib

    data = dict(data)
    kind = data.pop("kind", None)
    if kind not in _KINDS:  # a run record or plan from elsewhere names only one of these: nothing is imported by name
        raise SourceError(f"a recorded source is of kind {kind!r}; kinds: {', '.join(_KINDS)}. Pass the source again")
    module, _, name = _KINDS[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    if "keep" in data:
        data["keep"] = tuple(data["keep"])
    try:
        return cls(**data)
    except TypeError as exc:
        raise SourceError(f"a recorded {kind} source does not describe one ({exc}); pass the source again") from None
