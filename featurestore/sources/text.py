"""Text sources: a file plus which columns hold the id, the text, the event time and what to keep.

``TextSource(...).batches()`` streams :class:`SourceBatch` es of normalised, hashed records; memory
holds one batch at a time.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from featurestore.errors import SourceError
from featurestore.sources.batch import SourceBatch, batched
from featurestore.sources.content import content_hash, normalize_text
from featurestore.sources.formats import check_columns, detect_format, json_kind, open_records, readable_file

LINE_ID = "@line"  # id_col value: use the record's line (or row) number as its id
FLAGS = {"text": "`text_col`", "id": "`id_col`", "time": "`time_col`", "keep": "`keep`"}


@dataclass(frozen=True)
class TextSource:
    """Where texts come from and how to read them.

    Parameters
    ----------
    path : the file (csv, tsv, jsonl, parquet, text, or the SMSSpamCollection layout).
    format : one of ``csv tsv jsonl parquet text sms``; inferred from the name when None.
    id_col : the column holding entity ids; ``"@line"`` for the line number; None derives the id
        from the content (the first 16 hex of its hash), so identical texts are one entity.
    text_col : the column holding the text.
    time_col : the column with the event time (ISO 8601 or epoch seconds); None uses the run time.
    keep : columns passed through to the table (e.g. ``label``).
    header : whether a CSV/TSV file starts with a header (else columns are ``col0, col1 ...``).
    """

    path: str
    format: str | None = None
    id_col: str | None = None
    text_col: str = "text"
    time_col: str | None = None
    keep: tuple[str, ...] = ()
    header: bool = True

    kind = "text"
    modality = "text"

    @property
    def resolved_format(self) -> str:
        return detect_format(Path(self.path), self.format)

    def describe(self) -> dict[str, Any]:
        return {
            "path": os.fspath(self.path),
            "format": self.resolved_format,
            "id_col": self.id_col,
            "text_col": self.text_col,
            "time_col": self.time_col,
            "keep": list(self.keep),
        }

    def batches(self, batch_size: int = 10_000) -> Iterator[SourceBatch]:
        """Stream the records in batches; raises :class:`SourceError` naming the file and line."""
        path = readable_file(self.path, "a text source")
        fmt = self.resolved_format
        columns, records = open_records(path, fmt, header=self.header, batch_size=batch_size)
        self._check_columns(path, fmt, columns)
        empty = f"{path} has no records; nothing to materialize"
        yield from batched(records, functools.partial(self._append, path), batch_size, self.keep, empty=empty)

    def _check_columns(self, path: Path, fmt: str, columns: list[str]) -> None:
        wanted = [("text", self.text_col)]
        if self.id_col and self.id_col != LINE_ID:
            wanted.append(("id", self.id_col))
        if self.time_col:
            wanted.append(("time", self.time_col))
        wanted += [("keep", c) for c in self.keep]
        check_columns(path, fmt, columns, wanted, flags=FLAGS)

    def _append(self, path: Path, batch: SourceBatch, numbered: tuple[int, dict[str, Any]]) -> None:
        line, record = numbered
        required = [self.text_col] + ([self.id_col] if self.id_col and self.id_col != LINE_ID else [])
        for col in required:
            if col not in record:
                raise SourceError(f"{path}: line {line} has no {col!r} field")
        raw = record[self.text_col]
        text = normalize_text(raw) if isinstance(raw, str) else ""
        digest = content_hash(text)
        if self.id_col == LINE_ID:
            entity = str(line)
        elif self.id_col:
            value = record[self.id_col]
            if isinstance(value, (list, dict, bool)):
                raise SourceError(
                    f"{path}: line {line}: the id in column {self.id_col!r} is {json_kind(value)}; ids must be strings or integers"
                )
            entity = "" if value is None else str(value).strip()
            if not entity:
                raise SourceError(f"{path}: line {line} has an empty id in column {self.id_col!r}; every record needs an id")
        else:
            entity = digest[:16]
        when = self._event_time(path, line, record) if self.time_col else None
        batch.add(line, entity, text, digest, record, event_timestamp=when, reason=_text_problem(raw, text))

    def _event_time(self, path: Path, line: int, record: dict[str, Any]) -> datetime | None:
        value = record.get(self.time_col)  # type: ignore[arg-type]
        if value is None or value == "":
            return None
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        try:
            if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().lstrip("-").replace(".", "", 1).isdigit()):
                return datetime.fromtimestamp(float(value), tz=timezone.utc)
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except (ValueError, OverflowError, OSError):
            raise SourceError(
                f"{path}: line {line}: {value!r} in time column {self.time_col!r} is not a time; "
                "use ISO 8601 (2024-05-01T12:00:00Z) or epoch seconds"
            ) from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _text_problem(raw: Any, text: str) -> str | None:
    """Why a record's text cannot be encoded (None: it can). A JSON number or list is not text:
    encoding its digits would store a vector that means nothing."""
    if raw is None:
        return "empty text (null)"
    if not isinstance(raw, str):
        return f"the text is {json_kind(raw)} ({str(raw)[:40]}), not a string"
    return None if text else "empty text"
