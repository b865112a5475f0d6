"""Record readers, one per file format: each yields ``(line_number, record_dict)`` lazily.

Nothing here holds more than one record (or one Parquet/Arrow batch) in memory, so memory does
not grow with the source. Lines are decoded as strict UTF-8 one at a time, so a bad byte is
reported with its line number.
"""

from __future__ import annotations

import csv
import difflib
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from featurestore.errors import InvalidArgumentError, SourceError

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "parquet", "text", "sms", "cranfield", "beir")
# formats whose records carry their own document id, in the column "id" (the default --id-col)
ID_FORMATS: tuple[str, ...] = ("cranfield", "beir")
_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".txt": "text",
}
Record = tuple[int, dict[str, Any]]

csv.field_size_limit(sys.maxsize)


def readable_file(path: str | os.PathLike[str], what: str) -> Path:
    """``path`` when it is a file this process can read, else a :class:`SourceError` saying why
    (``what``: the source it is, "a text source")."""
    path = Path(path)
    if not path.exists():
        raise SourceError(f"source file not found: {path}")
    if path.is_dir():
        raise SourceError(f"{path} is a folder; {what} is one file")
    if not os.access(path, os.R_OK):
        raise SourceError(f"cannot read {path}: permission denied")
    return path


def detect_format(path: Path, explicit: str | None = None) -> str:
    """The format named by the user, else the one the file name implies."""
    if explicit:
        fmt = explicit.lower()
        if fmt not in FORMATS:
            raise InvalidArgumentError(f"unknown format {explicit!r}; choose one of: {', '.join(FORMATS)}")
        return fmt
    if path.name.startswith("SMSSpamCollection"):
        return "sms"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise SourceError(
            f"cannot tell the format of {path} from its name; pass `format` as one of: {', '.join(FORMATS)}"
        )
    if fmt == "text" and _looks_like_sms(path):
        raise SourceError(f"{path} looks like the SMS layout (label<TAB>text): use `format='sms'` "
                          "(or `format='text'` to encode each whole line, label included)")
    return fmt


_SMS_LINE = re.compile(r"^\S{1,32}\t\S")


def _looks_like_sms(path: Path, lines: int = 20) -> bool:
    """Whether the first non-blank lines of a text file all read ``label<TAB>text``, with few labels."""
    labels: list[str] = []
    try:
        with open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if not line.strip():
                    continue
                if not _SMS_LINE.match(line):
                    return False
                labels.append(line.partition("\t")[0])
                if len(labels) >= lines:
                    break
    except OSError:
        return False  # reading it fails again, with its message, where the records are read
    return bool(labels) and len(set(labels)) <= max(1, len(labels) // 2)


def decoded_lines(path: Path) -> Iterator[str]:
    """The file's lines as str, strict UTF-8 (a BOM on the first line is dropped)."""
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise SourceError(
                    f"{path}: line {number} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                    f"{exc.start + 1}); re-save the file as UTF-8 or fix that line"
                ) from None


def read_delimited(path: Path, *, delimiter: str, header: bool) -> tuple[list[str], Iterator[Record]]:
    """CSV/TSV: the column names and a lazy iterator of records."""
    reader = csv.reader(decoded_lines(path), delimiter=delimiter)
    try:
        first = next(reader)
    except StopIteration:
        raise SourceError(f"{path} is empty: no header and no records") from None
    except csv.Error as exc:
        raise SourceError(f"{path}: line 1: {exc}") from None
    columns = [c.strip() for c in first] if header else [f"col{i}" for i in range(len(first))]
    if header and len(set(columns)) != len(columns):
        dupes = sorted({c for c in columns if columns.count(c) > 1})
        raise SourceError(f"{path}: the header repeats column names {dupes}; rename them")

    def records() -> Iterator[Record]:
        if not header:
            yield 1, dict(zip(columns, first))
        start = reader.line_num + 1
        try:
            for row in reader:
                if not row:  # blank line
                    start = reader.line_num + 1
                    continue
                if len(row) != len(columns):
                    raise SourceError(
                        f"{path}: line {start} has {len(row)} fields but the {'header' if header else 'first line'} "
                        f"has {len(columns)}; quote fields that contain the delimiter"
                    )
                yield start, dict(zip(columns, row))
                start = reader.line_num + 1
        except csv.Error as exc:
            raise SourceError(f"{path}: line {reader.line_num}: {exc}") from None

    return columns, records()


def read_jsonl(path: Path) -> tuple[list[str], Iterator[Record]]:
    """JSON Lines: one object per line; the column names are those of the first object."""
    lines = ((n, line) for n, line in enumerate(decoded_lines(path), 1) if line.strip())

    def parse(number: int, line: str) -> dict[str, Any]:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SourceError(f"{path}: line {number} is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise SourceError(f"{path}: line {number} is a JSON {type(obj).__name__}, expected an object")
        return obj

    try:
        number, line = next(lines)
    except StopIteration:
        raise SourceError(f"{path} is empty: no records") from None
    first = parse(number, line)

    def records() -> Iterator[Record]:
        yield number, first
        for n, raw in lines:
            yield n, parse(n, raw)

    return list(first), records()


def read_parquet(path: Path, *, batch_size: int) -> tuple[list[str], Iterator[Record]]:
    """Parquet: streamed in record batches; 'line' is the 1-based row number."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError subclasses
        raise SourceError(f"{path} is not a readable Parquet file: {exc}") from None
    columns = list(pf.schema_arrow.names)

    def records() -> Iterator[Record]:
        row = 0
        for batch in pf.iter_batches(batch_size=batch_size):
            for rec in batch.to_pylist():
                row += 1
                yield row, rec

    return columns, records()


def read_text(path: Path) -> tuple[list[str], Iterator[Record]]:
    """Plain text: one record per non-blank line, in a column named ``text``."""
    def records() -> Iterator[Record]:
        for n, line in enumerate(decoded_lines(path), 1):
            line = line.rstrip("\r\n")
            if line.strip():
                yield n, {"text": line}

    return ["text"], records()


def read_sms(path: Path) -> tuple[list[str], Iterator[Record]]:
    """The SMSSpamCollection layout: ``label<TAB>text`` per line, no header."""
    def records() -> Iterator[Record]:
        for n, line in enumerate(decoded_lines(path), 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            label, tab, text = line.partition("\t")
            if not tab:
                raise SourceError(f"{path}: line {n} has no TAB; the sms format is 'label<TAB>text' per line")
            yield n, {"label": label, "text": text}

    return ["label", "text"], records()


def read_cranfield(path: Path, fields: tuple[str, ...] = (".T", ".W")) -> tuple[list[str], Iterator[Record]]:
    """Cranfield's ``.I`` records (``cran.all.1400``, ``cran.qry``): ``{"id": the .I number, "text"}``.

    The text joins the lines of the given fields in order (documents: title then body; queries:
    ``(".W",)``); the record's line is that of its ``.I`` line.
    """
    def records() -> Iterator[Record]:
        current: tuple[int, str] | None = None
        key: str | None = None
        lines: list[str] = []
        for n, line in enumerate(decoded_lines(path), 1):
            line = line.rstrip("\r\n")
            if line.startswith(".I ") or line.rstrip() == ".I":
                if current is not None:
                    yield current[0], {"id": current[1], "text": " ".join(lines)}
                parts = line.split()
                if len(parts) != 2:
                    raise SourceError(f"{path}: line {n}: expected '.I <id>', got {line[:40]!r}")
                current, key, lines = (n, parts[1]), None, []
            elif line.startswith(".") and len(line.rstrip()) == 2:
                key = line.rstrip()
            elif current is None:
                if line.strip():
                    raise SourceError(f"{path}: line {n} comes before the first '.I' record; is this a Cranfield file?")
            elif key in fields and line.strip():
                lines.append(line.strip())
        if current is not None:
            yield current[0], {"id": current[1], "text": " ".join(lines)}

    return ["id", "text"], records()


def read_beir(path: Path) -> tuple[list[str], Iterator[Record]]:
    """A BEIR ``corpus.jsonl`` (``_id``, ``title``, ``text``) or ``queries.jsonl`` (``_id``, ``text``):
    ``{"id": _id, "text": title and text joined by a space}``."""
    _, rows = read_jsonl(path)

    def records() -> Iterator[Record]:
        for n, obj in rows:
            if "_id" not in obj or not isinstance(obj.get("text", ""), str) or not isinstance(obj.get("title") or "", str):
                raise SourceError(f"{path}: line {n} is not a BEIR record: {{\"_id\", \"title\" (optional), \"text\"}} with string texts")
            parts = [obj.get("title") or "", obj.get("text") or ""]
            yield n, {"id": obj["_id"], "text": " ".join(p.strip() for p in parts if p.strip())}

    return ["id", "text"], records()


# What each role of a column needs, said in words for the error, and the Parquet types that give it.
ROLE_NEEDS = {
    "text": "text (a string column)",
    "path": "file paths (a string column)",
    "id": "ids (a string or integer column)",
    "time": "times (a timestamp, date, number or ISO 8601 string column)",
    "keep": "values to keep (strings, numbers, booleans, times, or lists of them)",
}


def check_columns(path: Path, fmt: str, columns: list[str], wanted: list[tuple[str, str]], *, flags: dict[str, str] | None = None) -> None:
    """Every ``(role, column)`` in ``wanted`` is in ``columns`` and, in a Parquet file, of a type
    its role can use: an integer or a list of floats read as "text" would encode as a string of
    digits or brackets (a zero vector for word2vec), silently. CSV/TSV cells are strings; JSONL
    values are checked per record. ``flags`` names the option that sets a role's column."""
    flags = flags or {}
    for role, col in wanted:
        if col not in columns:
            close = difflib.get_close_matches(col, columns, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            flag = f" (set {flags[role]})" if role in flags else ""
            raise SourceError(f"{path}: {role} column {col!r} not found{flag}; the columns are: {', '.join(columns)}.{hint}")
    if fmt != "parquet":
        return
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    for role, col in wanted:
        kind = schema.field(col).type
        if not _fits(role, kind):
            strings = [f.name for f in schema if _fits("text", f.type)]
            offer = f" (string columns: {', '.join(strings)})" if strings and role in ("text", "path") else ""
            flag = f"pick another column with {flags[role]}{offer} or " if role in flags else ""
            raise SourceError(
                f"{path}: {role} column {col!r} holds {kind} values, but it must hold {ROLE_NEEDS[role]}; "
                f"{flag}cast the column in the file"
            )


def _fits(role: str, kind: Any) -> bool:
    """Whether a Parquet column of Arrow type ``kind`` can serve as ``role``."""
    import pyarrow.types as t

    def plain(kind: Any) -> Any:
        return kind.value_type if t.is_dictionary(kind) else kind

    def is_text(kind: Any) -> bool:
        return t.is_string(kind) or t.is_large_string(kind) or (hasattr(t, "is_string_view") and t.is_string_view(kind))

    kind = plain(kind)
    if role in ("text", "path"):
        return is_text(kind)
    if role == "id":
        return is_text(kind) or t.is_integer(kind)
    if role == "time":
        return is_text(kind) or t.is_timestamp(kind) or t.is_date(kind) or t.is_integer(kind) or t.is_floating(kind)
    if t.is_list(kind) or t.is_large_list(kind) or t.is_fixed_size_list(kind):
        kind = plain(kind.value_type)
    scalar = is_text(kind) or t.is_integer(kind) or t.is_floating(kind) or t.is_boolean(kind) or t.is_decimal(kind)
    return scalar or t.is_timestamp(kind) or t.is_date(kind) or t.is_null(kind)


def json_kind(value: Any) -> str:
    """What a JSON value is, in JSON's words: for messages about a record's field."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


def open_records(path: Path, fmt: str, *, header: bool, batch_size: int) -> tuple[list[str], Iterator[Record]]:
    """The column names and the record iterator of ``path`` read as ``fmt``."""
    if fmt == "csv":
        return read_delimited(path, delimiter=",", header=header)
    if fmt == "tsv":
        return read_delimited(path, delimiter="\t", header=header)
    if fmt == "jsonl":
        return read_jsonl(path)
    if fmt == "parquet":
        return read_parquet(path, batch_size=batch_size)
    if fmt == "text":
        return read_text(path)
    if fmt == "cranfield":
        return read_cranfield(path)
    if fmt == "beir":
        return read_beir(path)
    return read_sms(path)
