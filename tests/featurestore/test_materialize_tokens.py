"""Token views: CoNLL-2003 sentences stored one row per word, aligned with the source."""

from __future__ import annotations

import numpy as np

from featurestore.materialization import materialize
from featurestore.sources import ConllSource, open_source
from featurestore.store import Store
from tests.conftest import DATA, need

TESTA = DATA / "ner" / "conll2003" / "eng.testa"


def source_tokens(path) -> list[str]:
    tokens = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts and parts[0] != "-DOCSTART-":
            tokens.append(parts[0])
    return tokens


def test_every_token_of_eng_testa_is_one_row_equal_to_the_source(tmp_path, word2vec):
    need(TESTA)
    summary = materialize(open_source(TESTA), "conll", "word2vec", store=tmp_path, encoder_options={"granularity": "token"})
    assert summary.granularity == "token" and summary.rows_seen == 3250
    table = Store(tmp_path).resolve_table("conll")
    rows, _ = table.scan(["entity_id", "token_index", "token", "ner_tags", "oov", "char_start", "char_end"])
    assert rows.num_rows == 51_362
    order = np.lexsort((rows.column("token_index").to_numpy(), rows.column("entity_id").to_numpy(zero_copy_only=False)))
    stored = rows.column("token").to_pylist()
    assert [stored[i] for i in order] == source_tokens(TESTA)
    tags = set(rows.column("ner_tags").to_pylist())
    assert tags <= {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-MISC", "I-MISC"} and "B-PER" in tags
    frame = table.latest(["token", "ner_tags"])
    assert frame.vectors.shape == (51_362, 100)
    again = materialize(open_source(TESTA), "conll", "word2vec", store=tmp_path, encoder_options={"granularity": "token"})
    assert again.encoded == 0 and again.skipped == 3250


def test_minilm_token_rows_line_up_and_are_contextual(tmp_path, minilm):
    need(TESTA)
    lines = TESTA.read_text(encoding="utf-8").split("\n\n")[:40]
    small = tmp_path / "small.conll"
    small.write_text("\n\n".join(lines) + "\n", encoding="utf-8")
    summary = materialize(ConllSource(str(small)), "ner", "minilm", store=tmp_path / "s", encoder_options={"granularity": "token", "device": "cpu"})
    table = Store(tmp_path / "s").resolve_table("ner")
    frame = table.latest(["token", "token_index", "char_start", "char_end", "ner_tags"])
    tokens = frame.columns.column("token").to_pylist()
    assert len(tokens) == summary.tokens == len(source_tokens(small))
    assert frame.vectors.shape == (len(tokens), 384)
    # The same word gets different vectors in different sentences (contextual).
    first = [i for i, t in enumerate(tokens) if t == "the"][:2]
    if len(first) == 2:
        a, b = frame.vectors[first[0]], frame.vectors[first[1]]
        assert not np.allclose(a, b)
