"""CoNLL token files: one token per line, a blank line ends a sentence, ``-DOCSTART-`` a document.

Two layouts, told apart by the first token line (``columns="auto"``): CoNLL-2003's four columns
``token POS chunk NER`` and the two columns ``token TAG`` of WNUT-17 and similar sets, separated
by spaces or tabs. Each sentence is one entity, ``entity_id = "DDDDD-SSSS"`` (the document's
index in the file, the sentence's position in its document), and its content is the tokens
joined by single spaces, so token ``i``'s character span in the content is fixed by the tokens.
Tokens are read as NFC (the form the content hash covers), with a stray U+FEFF (a BOM left by
concatenating files) dropped from their start.
Tag columns come in BIO (``scheme="bio"``: IOB1 files such as CoNLL-2003, where an entity
starts with ``I-`` unless it follows one of its own type, are converted) or as written.

A ``-DOCSTART-`` line may sit anywhere (in some copies the first one is at the end of the
file); document indices count the documents that hold sentences, so they do not depend on it.
"""

from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.sources.batch import SourceBatch, batched
from featurestore.sources.content import content_hash
from featurestore.sources.formats import decoded_lines, readable_file

DOCSTART = "-DOCSTART-"
LAYOUTS: dict[str, tuple[str, ...]] = {
    "conll2003": ("token", "pos_tags", "chunk_tags", "ner_tags"),
    "token-tag": ("token", "ner_tags"),
}
KEEPABLE = ("ner_tags", "pos_tags", "chunk_tags")
SCHEMES = ("bio", "as-is")
_IOB_COLUMNS = ("ner_tags", "chunk_tags")  # tag columns in IOB form: validated and converted
_TAG = re.compile(r"O|[BI]-\S+")
_FIELDS = re.compile(r"[ \t]+")


def iob1_to_bio(tags: Sequence[str]) -> list[str]:
    """IOB1 (or any IOB) tags as BIO: an ``I-X`` that does not continue an ``X`` entity becomes ``B-X``.

    ``["I-PER", "I-PER"] -> ["B-PER", "I-PER"]``; ``["I-LOC", "B-LOC"] -> ["B-LOC", "B-LOC"]``.
    Valid BIO comes back unchanged. Tags must be ``O``, ``B-X`` or ``I-X``.
    """
    out: list[str] = []
    previous = "O"
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise ValueError(f"{tag!r} is not an IOB tag; expected 'O', 'B-TYPE' or 'I-TYPE'")
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        out.append(tag)
        previous = tag
    return out


@dataclass
class _Sentence:
    line: int
    doc: int
    position: int
    columns: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ConllSource:
    """Sentences of a CoNLL-style token file.

    Parameters
    ----------
    path : the file (strict UTF-8).
    keep : tag columns passed through as per-sentence lists: ``ner_tags`` (both layouts),
        ``pos_tags`` and ``chunk_tags`` (four-column files).
    scheme : ``bio`` (convert IOB1 NER and chunk tags to BIO) or ``as-is``.
    columns : ``auto`` (from the first token line), ``conll2003`` (token POS chunk NER) or
        ``token-tag`` (token and NER tag).
    """

    path: str
    keep: tuple[str, ...] = ("ner_tags",)
    scheme: str = "bio"
    columns: str = "auto"

    kind = "conll"
    modality = "tokens"

    def __post_init__(self) -> None:
        if self.columns not in ("auto", *LAYOUTS):
            raise InvalidArgumentError(f"columns must be one of 'auto', {', '.join(map(repr, LAYOUTS))}. Got {self.columns!r} instead.")
        if self.scheme not in SCHEMES:
            raise InvalidArgumentError(f"scheme must be one of {', '.join(map(repr, SCHEMES))}. Got {self.scheme!r} instead.")
        unknown = [c for c in self.keep if c not in KEEPABLE]
        if unknown:
            raise SourceError(f"a CoNLL source keeps {', '.join(KEEPABLE)}; cannot keep {', '.join(map(repr, unknown))}")

    @property
    def layout(self) -> str:
        """The column layout: as given, or detected from the first token line."""
        if self.columns != "auto":
            return self.columns
        path = self._checked_path()
        for number, line in enumerate(decoded_lines(path), 1):
            fields = _fields(line)
            if fields and fields[0] != DOCSTART:
                return _detect(path, number, fields)
        raise SourceError(f"{path} has no token lines; a CoNLL file has one 'token ... tag' per line")

    def describe(self) -> dict[str, Any]:
        return {
            "path": os.fspath(self.path),
            "format": "conll",
            "columns": self.layout,
            "scheme": self.scheme,
            "keep": list(self.keep),
        }

    def batches(self, batch_size: int = 10_000) -> Iterator[SourceBatch]:
        """Stream sentences in batches; raises :class:`SourceError` naming the file and line."""
        empty = f"{self.path} has no sentences; nothing to materialize"
        yield from batched(self._sentences(), self._append, batch_size, self.keep, tokens=True, empty=empty)

    def _append(self, batch: SourceBatch, sentence: _Sentence) -> None:
        tokens = sentence.columns["token"]
        content = " ".join(tokens)
        kept = {}
        for column in self.keep:
            tags = sentence.columns[column]
            kept[column] = iob1_to_bio(tags) if self.scheme == "bio" and column in _IOB_COLUMNS else tags
        batch.add(sentence.line, f"{sentence.doc:05d}-{sentence.position:04d}", content, content_hash(content), kept, tokens=tokens)

    def _sentences(self) -> Iterator[_Sentence]:
        """Sentences in file order, each with its first line, document index and position."""
        path = self._checked_path()
        layout = None if self.columns == "auto" else LAYOUTS[self.columns]
        doc, position, pending_doc = 0, 0, False
        current: _Sentence | None = None
        for number, line in enumerate(decoded_lines(path), 1):
            fields = _fields(line)
            if not fields or fields[0] == DOCSTART:
                if current is not None:
                    yield current
                    position += 1
                    current = None
                if fields and position:  # a new document, once the current one has sentences
                    pending_doc = True
                continue
            if layout is None:
                layout = LAYOUTS[_detect(path, number, fields)]
                self._check_keep(path, layout)
            if len(fields) != len(layout):
                raise SourceError(
                    f"{path}: line {number} has {len(fields)} columns but this file has {len(layout)} "
                    f"({' '.join(layout)}); fix the line or the separators (a space or a tab between columns)"
                )
            if current is None:
                if pending_doc:
                    doc, position, pending_doc = doc + 1, 0, False
                current = _Sentence(number, doc, position, {name: [] for name in layout})
            for name, value in zip(layout, fields):
                if name in _IOB_COLUMNS and not _TAG.fullmatch(value):
                    raise SourceError(
                        f"{path}: line {number}: {value!r} in the {name[:-5]} column is not a tag; "
                        "expected 'O', 'B-TYPE' or 'I-TYPE'"
                    )
                current.columns[name].append(value)
        if current is not None:
            yield current

    def _check_keep(self, path: Path, layout: tuple[str, ...]) -> None:
        missing = [c for c in self.keep if c not in layout]
        if missing:
            raise SourceError(
                f"{path} has the columns {' '.join(layout)}, so it cannot keep {', '.join(missing)}; "
                f"keep one of: {', '.join(c for c in layout if c != 'token')}"
            )

    def _checked_path(self) -> Path:
        path = readable_file(self.path, "a CoNLL source")
        if self.columns != "auto":
            self._check_keep(path, LAYOUTS[self.columns])
        return path


def _fields(line: str) -> list[str]:
    """A line's columns: split on spaces and tabs, a stray U+FEFF dropped from each start, NFC."""
    fields = [f.lstrip("\ufeff") for f in _FIELDS.split(line.strip(" \t\r\n"))]
    return [unicodedata.normalize("NFC", f) for f in fields if f]


def _detect(path: Path, number: int, fields: list[str]) -> str:
    for name, layout in LAYOUTS.items():
        if len(fields) == len(layout):
            return name
    raise SourceError(
        f"{path}: line {number} has {len(fields)} columns; a CoNLL file has 4 (token POS chunk NER, "
        "as CoNLL-2003) or 2 (token TAG, as WNUT-17)"
    )
