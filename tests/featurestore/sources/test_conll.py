"""CoNLL sources on the real CoNLL-2003 dev set, the two-column layout, IOB1 -> BIO, and bad lines."""

from __future__ import annotations

import re

import pytest

from featurestore import settings
from featurestore.errors import InvalidArgumentError, SourceError
from featurestore.sources import ConllSource, content_hash, from_dict, iob1_to_bio, to_dict
from tests.conftest import need

CONLL = settings.data_dir() / "ner" / "conll2003"
TESTA = CONLL / "eng.testa"


def sentences(source: ConllSource, batch_size: int = 10_000) -> list[dict]:
    out = []
    for batch in source.batches(batch_size):
        assert len(batch.tokens) == len(batch)
        for i in range(len(batch)):
            out.append(
                {
                    "id": batch.entity_id[i],
                    "line": batch.line[i],
                    "content": batch.content[i],
                    "hash": batch.content_hash[i],
                    "tokens": batch.tokens[i],
                    "time": batch.event_timestamp[i],
                    "reason": batch.reason[i],
                    **{k: v[i] for k, v in batch.keep.items()},
                }
            )
    return out


def plain_read(path) -> list[list[list[str]]]:
    """An independent reading: sentences as lists of split lines, -DOCSTART- lines dropped."""
    out, current = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if current:
                out.append(current)
            current = []
        else:
            current.append(fields)
    if current:
        out.append(current)
    return out


@pytest.fixture(scope="module")
def testa() -> list[dict]:
    need(TESTA)
    return sentences(ConllSource(str(TESTA), keep=("ner_tags", "pos_tags", "chunk_tags")), batch_size=1000)


def test_eng_testa_has_every_token_in_order(testa):
    expected = plain_read(TESTA)
    assert len(testa) == 3250
    assert sum(len(s["tokens"]) for s in testa) == 51_362
    assert [s["tokens"] for s in testa] == [[f[0] for f in sent] for sent in expected]
    assert [s["pos_tags"] for s in testa] == [[f[1] for f in sent] for sent in expected]
    for s in testa:
        assert s["content"] == " ".join(s["tokens"])
        assert s["hash"] == content_hash(s["content"])
        assert s["time"] is None and s["reason"] is None
        assert len(s["ner_tags"]) == len(s["chunk_tags"]) == len(s["tokens"])
        assert all(isinstance(t, str) for t in s["ner_tags"])


def test_entity_ids_are_document_and_sentence_positions(testa):
    ids = [s["id"] for s in testa]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"\d{5}-\d{4}", i) for i in ids)
    assert ids[:2] == ["00000-0000", "00000-0001"]
    # eng.testa has 216 documents; in this copy the first -DOCSTART- sits at the end of the file
    assert len({i[:5] for i in ids}) == 216 and ids[-1].startswith("00215-")
    lines = TESTA.read_text(encoding="utf-8").splitlines()
    for s in testa[:50] + testa[-50:]:
        assert lines[s["line"] - 1].split()[0] == s["tokens"][0]
        if s["id"].endswith("-0000") and s["line"] > 1:  # a document's first sentence follows a -DOCSTART-
            assert lines[s["line"] - 3].startswith("-DOCSTART-")


def test_entity_ids_do_not_depend_on_where_the_first_docstart_sits(tmp_path, testa):
    text = TESTA.read_text(encoding="utf-8")
    assert text.rstrip().endswith("-DOCSTART- -X- O O")
    moved = tmp_path / "eng.testa"
    body = text.rstrip().removesuffix("-DOCSTART- -X- O O").rstrip()
    moved.write_text("-DOCSTART- -X- O O\n\n" + body + "\n", encoding="utf-8")
    again = sentences(ConllSource(str(moved)))
    assert [s["id"] for s in again] == [s["id"] for s in testa]
    assert [s["tokens"] for s in again] == [s["tokens"] for s in testa]


def test_ner_and_chunk_tags_are_bio(testa):
    expected = plain_read(TESTA)
    assert [s["ner_tags"] for s in testa] == [iob1_to_bio([f[3] for f in sent]) for sent in expected]
    for s in testa:
        for column in ("ner_tags", "chunk_tags"):
            tags = s[column]
            for prev, tag in zip(["O", *tags], tags):
                assert not tag.startswith("I-") or prev[2:] == tag[2:], (s["id"], tags)
    first = testa[0]
    assert first["tokens"][:3] == ["CRICKET", "-", "LEICESTERSHIRE"]
    assert first["ner_tags"][:3] == ["O", "O", "B-ORG"]  # I-ORG in the file
    raw = sentences(ConllSource(str(TESTA), scheme="as-is"))
    assert raw[0]["ner_tags"][:3] == ["O", "O", "I-ORG"]


def test_iob1_to_bio():
    assert iob1_to_bio(["I-PER", "I-PER"]) == ["B-PER", "I-PER"]
    assert iob1_to_bio(["I-LOC", "B-LOC"]) == ["B-LOC", "B-LOC"]
    assert iob1_to_bio(["O", "I-MISC", "I-PER", "O", "I-ORG", "I-ORG"]) == ["O", "B-MISC", "B-PER", "O", "B-ORG", "I-ORG"]
    bio = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert iob1_to_bio(bio) == bio  # valid BIO is unchanged
    assert iob1_to_bio([]) == []
    with pytest.raises(ValueError, match="X-PER"):
        iob1_to_bio(["X-PER"])


def test_batches_split_the_same_sentences(testa):
    small = sentences(ConllSource(str(TESTA), keep=("ner_tags", "pos_tags", "chunk_tags")), batch_size=7)
    assert small == testa


def test_travels_as_a_plain_dict():
    source = ConllSource("x.conll", keep=("ner_tags", "pos_tags"), scheme="as-is", columns="conll2003")
    data = to_dict(source)
    assert data == {
        "kind": "conll", "path": "x.conll", "keep": ["ner_tags", "pos_tags"], "scheme": "as-is", "columns": "conll2003",
    }
    assert from_dict(data) == source


def test_describe_names_the_detected_layout(tmp_path):
    need(TESTA)
    assert ConllSource(str(TESTA)).describe() == {
        "path": str(TESTA), "format": "conll", "columns": "conll2003", "scheme": "bio", "keep": ["ner_tags"],
    }


def test_two_column_wnut_style_file_with_a_stray_bom(tmp_path):
    path = tmp_path / "wnut.conll"
    path.write_text(
        "\ufeff@paulwalk\tO\nIt\tO\n's\tO\nthe\tO\nEmpire\tB-location\nState\tI-location\n\n"
        "\ufeffFrom\tO\nNYC\tB-location\n\n\n",
        encoding="utf-8",
    )
    got = sentences(ConllSource(str(path)))
    assert [s["tokens"] for s in got] == [["@paulwalk", "It", "'s", "the", "Empire", "State"], ["From", "NYC"]]
    assert got[0]["ner_tags"] == ["O", "O", "O", "O", "B-location", "I-location"]
    assert [s["id"] for s in got] == ["00000-0000", "00000-0001"]
    assert [s["line"] for s in got] == [1, 8]
    assert got[1]["content"] == "From NYC"
    assert ConllSource(str(path)).describe()["columns"] == "token-tag"
    with pytest.raises(SourceError, match=r"token ner_tags, so it cannot keep pos_tags"):
        list(ConllSource(str(path), keep=("pos_tags",)).batches())


def test_wrong_number_of_columns_names_the_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("EU NNP I-NP I-ORG\nrejects VBZ I-VP O\n\nGerman JJ I-ORG\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"bad\.conll: line 4 has 3 columns but this file has 4"):
        list(ConllSource(str(path)).batches())


def test_invalid_tag_names_the_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("-DOCSTART- -X- O O\n\nPeter NNP I-NP X-PER\n", encoding="utf-8")
    expected = r"bad\.conll: line 3: 'X-PER' in the ner column is not a tag; expected 'O', 'B-TYPE' or 'I-TYPE'"
    with pytest.raises(SourceError, match=expected):
        list(ConllSource(str(path)).batches())


def test_first_line_with_an_unknown_layout(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("a b c\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"line 1 has 3 columns; a CoNLL file has 4 .* or 2"):
        list(ConllSource(str(path)).batches())


def test_bad_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_bytes(b"EU O\n\nM\xfcnchen B-LOC\n")
    with pytest.raises(SourceError, match=r"line 3 is not valid UTF-8"):
        list(ConllSource(str(path)).batches())


@pytest.mark.parametrize("text", ["", "\n\n", "-DOCSTART- -X- O O\n\n"])
def test_a_file_without_sentences_is_an_error(tmp_path, text):
    path = tmp_path / "empty.conll"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SourceError, match="no sentences"):
        list(ConllSource(str(path)).batches())


def test_missing_file_and_bad_options(tmp_path):
    with pytest.raises(SourceError, match="not found"):
        list(ConllSource(str(tmp_path / "nope.conll")).batches())
    with pytest.raises(SourceError, match="cannot keep 'label'"):
        ConllSource("x", keep=("label",))
    with pytest.raises(InvalidArgumentError, match="scheme must be one of 'bio', 'as-is'. Got 'iob2' instead"):
        ConllSource("x", scheme="iob2")
    with pytest.raises(InvalidArgumentError, match="columns must be one of"):
        ConllSource("x", columns="three")
