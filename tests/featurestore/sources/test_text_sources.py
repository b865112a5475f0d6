"""Text sources: every format, id strategies, event times, and each bad-input message."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.sources import TextSource, content_hash


def rows(source: TextSource, batch_size: int = 10_000):
    out = []
    for batch in source.batches(batch_size):
        for i in range(len(batch)):
            out.append(
                {
                    "line": batch.line[i],
                    "id": batch.entity_id[i],
                    "text": batch.content[i],
                    "time": batch.event_timestamp[i],
                    "reason": batch.reason[i],
                    **{k: v[i] for k, v in batch.keep.items()},
                }
            )
    return out


def test_csv_with_header_id_time_and_kept_columns(tmp_path):
    path = tmp_path / "msgs.csv"
    path.write_text('id,body,when,label\n7,"Hello, world",2024-05-01T12:00:00Z,ham\n9,  Win cash  ,1714564800,spam\n')
    got = rows(TextSource(str(path), id_col="id", text_col="body", time_col="when", keep=("label",)))
    assert [r["id"] for r in got] == ["7", "9"]
    assert [r["text"] for r in got] == ["Hello, world", "Win cash"]
    assert got[0]["time"] == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert got[1]["time"] == datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
    assert [r["label"] for r in got] == ["ham", "spam"]
    assert [r["line"] for r in got] == [2, 3]


def test_csv_without_header_and_tsv(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a,first text\nb,second text\n")
    got = rows(TextSource(str(path), header=False, id_col="col0", text_col="col1"))
    assert [(r["id"], r["text"]) for r in got] == [("a", "first text"), ("b", "second text")]
    tsv = tmp_path / "x.tsv"
    tsv.write_text("key\ttext\nk1\tone, two\n")
    assert rows(TextSource(str(tsv), id_col="key"))[0]["text"] == "one, two"


def test_jsonl_parquet_and_plain_text(tmp_path):
    jl = tmp_path / "x.jsonl"
    jl.write_text(json.dumps({"id": 1, "text": "alpha"}) + "\n\n" + json.dumps({"id": 2, "text": "beta"}) + "\n")
    assert [(r["id"], r["text"], r["line"]) for r in rows(TextSource(str(jl), id_col="id"))] == [("1", "alpha", 1), ("2", "beta", 3)]
    pqf = tmp_path / "x.parquet"
    pq.write_table(pa.table({"doc": ["d1", "d2", "d3"], "text": ["x y", "z", "w"]}), pqf)
    assert [r["id"] for r in rows(TextSource(str(pqf), id_col="doc"), batch_size=2)] == ["d1", "d2", "d3"]
    txt = tmp_path / "notes.txt"
    txt.write_text("first line\n\nthird line\n")
    got = rows(TextSource(str(txt), id_col="@line"))
    assert [(r["id"], r["text"]) for r in got] == [("1", "first line"), ("3", "third line")]


def test_sms_layout_and_content_derived_ids(sms_file):
    path = sms_file(5)
    got = rows(TextSource(str(path), keep=("label",)))
    assert [r["label"] for r in got] == ["ham", "ham", "spam", "ham", "ham"]
    assert got[0]["id"] == content_hash(got[0]["text"])[:16]


def test_empty_text_is_a_row_level_reason_not_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("id,text\n1,hello\n2,   \n3,bye\n")
    assert [r["reason"] for r in rows(TextSource(str(path), id_col="id"))] == [None, "empty text", None]


def test_batches_stream_in_bounded_chunks(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("".join(f"line {i}\n" for i in range(2500)))
    sizes = [len(b) for b in TextSource(str(path), id_col="@line").batches(1000)]
    assert sizes == [1000, 1000, 500]


@pytest.mark.parametrize(
    ("content", "kwargs", "message"),
    [
        (None, {}, "source file not found"),
        (b"", {}, "is empty"),
        (b"id,text\n", {"id_col": "id"}, "has no records"),
        (b"id,text\n1,ok\n2,caf\xe9 bad\n", {"id_col": "id"}, r"line 3 is not valid UTF-8 \(byte 0xe9 at column 6\)"),
        (b"id,text\n1,ok\n", {"id_col": "id", "text_col": "txt"}, r"text column 'txt' not found \(set `text_col`\); the columns are: id, text\. Did you mean 'text'\?"),
        (b"id,text\n1,ok\n", {"id_col": "ident"}, r"id column 'ident' not found.*Did you mean 'id'"),
        (b"id,text\n1,ok\n", {"id_col": "id", "keep": ("lable",)}, r"keep column 'lable' not found"),
        (b"id,text\n1,ok\n2,a,b\n", {"id_col": "id"}, "line 3 has 3 fields but the header has 2"),
        (b"id,text\n1,ok\n,empty id\n", {"id_col": "id"}, "line 3 has an empty id"),
        (b"id,text,t\n1,ok,yesterday\n", {"id_col": "id", "time_col": "t"}, r"line 2: 'yesterday' in time column 't' is not a time"),
    ],
)
def test_bad_csv_inputs_name_the_file_line_and_column(tmp_path, content, kwargs, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        rows(TextSource(str(path), **kwargs))


def test_bad_jsonl_and_sms_lines(tmp_path):
    jl = tmp_path / "x.jsonl"
    jl.write_text('{"text": "ok"}\n{"text": broken}\n')
    with pytest.raises(SourceError, match="line 2 is not valid JSON"):
        rows(TextSource(str(jl)))
    sms = tmp_path / "SMSSpamCollection"
    sms.write_text("ham\tfine\nno tab here\n")
    with pytest.raises(SourceError, match="line 2 has no TAB"):
        rows(TextSource(str(sms)))


def test_unknown_format_and_unknown_suffix(tmp_path):
    path = tmp_path / "data.xyz"
    path.write_text("x")
    with pytest.raises(SourceError, match="pass `format` as one of"):
        rows(TextSource(str(path)))
    with pytest.raises(InvalidArgumentError, match="unknown format 'xml'"):
        rows(TextSource(str(path), format="xml"))
