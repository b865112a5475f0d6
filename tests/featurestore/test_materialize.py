"""Incremental materialization with the real word2vec and MiniLM weights on SMS slices."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore.errors import SourceError
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from featurestore.store import Store
from tests.conftest import snapshot


def sms_source(path, **kw) -> TextSource:
    return TextSource(str(path), format="sms", id_col="@line", keep=("label",), **kw)


def test_the_execute_hook_runs_the_plan_under_the_tables_lock(tmp_path, sms_file, word2vec):
    from featurestore.materialization import run_plan

    store = tmp_path / "store"
    seen = []

    def execute(p):
        holder = store / "locks" / "sms" / word2vec.encoder_id / "holder"
        seen.append((len(p.shards), p.to_encode, holder.read_text().split(",")[0]))
        return run_plan(p)

    summary = materialize(sms_source(sms_file(30)), "sms", "word2vec", store=store, shard_size=20, execute=execute)
    assert seen == [(2, 30, "materialize")] and (summary.encoded, summary.shards) == (30, 2)
    assert not (store / "locks" / "sms" / word2vec.encoder_id / "holder").exists()


def test_first_run_encodes_all_rerun_none_and_ten_changes_exactly_ten(tmp_path, sms_file, sms_lines, word2vec):
    store = tmp_path / "store"
    path = sms_file(300)
    first = materialize(sms_source(path), "sms", "word2vec", store=store, shard_size=128)
    assert (first.rows_seen, first.encoded, first.skipped, first.failed) == (300, 300, 0, 0)
    # 3 shards of distinct texts + 1 commit of rows whose text repeats an earlier one
    assert (first.shards, first.table_version) == (3, 3)
    assert first.forward_passes == len({line.split("\t", 1)[1] for line in sms_lines[:300]})
    again = materialize(sms_source(path), "sms", "word2vec", store=store)
    assert (again.encoded, again.skipped, again.table_version) == (0, 300, 3)

    lines = list(sms_lines[:300])
    for i in range(0, 100, 10):  # change 10 texts
        label, text = lines[i].split("\t", 1)
        lines[i] = f"{label}\t{text} (edited)"
    changed = sms_file(300, lines=lines)
    third = materialize(sms_source(changed), "sms", "word2vec", store=store)
    assert (third.encoded, third.skipped) == (10, 290)

    table = Store(store).resolve_table("sms", "word2vec")
    frame = table.latest(["label"])
    assert len(frame) == 300 and len(set(frame.ids.tolist())) == 300
    before = table.latest(as_of=first.table_version)
    row = frame.ids.tolist().index("1")
    old_row = before.ids.tolist().index("1")
    expected = word2vec.encode([lines[0].split("\t", 1)[1]])[0]
    np.testing.assert_allclose(frame.vectors[row], expected, atol=1e-6)
    assert not np.allclose(before.vectors[old_row], expected)  # history kept for time travel


def test_stored_vectors_equal_the_encoder_and_keep_labels(tmp_path, sms_file, minilm):
    path = sms_file(40)
    summary = materialize(sms_source(path), "sms", "minilm", store=tmp_path, encoder_options={"device": "cpu"})
    assert summary.encoded == 40
    frame = Store(tmp_path).resolve_table("sms", "minilm").latest(["label"])
    texts = [line.split("\t", 1)[1] for line in path.read_text().splitlines()]
    order = np.argsort(frame.ids.astype(int))
    np.testing.assert_allclose(frame.vectors[order], minilm.encode(texts), atol=1e-5)
    assert frame.columns.column("label").to_pylist()[order[2]] == "spam"


def test_full_sync_tombstones_only_when_asked(tmp_path, sms_file, word2vec):
    materialize(sms_source(sms_file(50)), "sms", "word2vec", store=tmp_path)
    shorter = sms_file(40, name="short.sms")
    kept = materialize(sms_source(shorter), "sms", "word2vec", store=tmp_path)
    assert kept.deleted == 0
    assert len(Store(tmp_path).resolve_table("sms").latest()) == 50
    synced = materialize(sms_source(shorter), "sms", "word2vec", store=tmp_path, full_sync=True)
    assert synced.deleted == 10
    table = Store(tmp_path).resolve_table("sms")
    assert len(table.latest()) == 40
    assert len(table.latest(as_of=synced.previous_version)) == 50


def test_empty_texts_are_recorded_failures_and_strict_makes_them_fatal(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\n1,hello there\n2,\n3,see you\n")
    summary = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path / "s")
    assert (summary.encoded, summary.failed) == (2, 1)
    assert summary.failures == [{"line": 3, "entity_id": "2", "reason": "empty text"}]
    before = snapshot(tmp_path / "s")
    with pytest.raises(SourceError, match="line 3: empty text"):
        materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path / "s", strict=True)
    assert snapshot(tmp_path / "s") == before


def test_duplicate_ids_error_names_them_or_last_wins(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\na,first\nb,other\na,second\nc,same\nc,same\n")
    with pytest.raises(SourceError, match=r"duplicate ids with different content: 'a' \(lines 2 and 4\)"):
        materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path / "s")
    assert not (tmp_path / "s" / "views").exists()
    summary = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path / "s", on_duplicate="last")
    assert (summary.encoded, summary.duplicates) == (3, 2)
    frame = Store(tmp_path / "s").resolve_table("m").latest()
    np.testing.assert_allclose(frame.vectors[frame.ids.tolist().index("a")], word2vec.encode(["second"])[0], atol=1e-6)


def test_identical_texts_are_encoded_once_across_shards_and_runs(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\n1,call me now\n2,later\n3,call me now\n4,call me now\n")
    summary = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path, shard_size=1)
    assert (summary.encoded, summary.forward_passes, summary.reused) == (4, 2, 2)
    more = tmp_path / "more.csv"
    more.write_text("id,text\n5,later\n6,something new\n")
    summary = materialize(TextSource(str(more), id_col="id"), "m", "word2vec", store=tmp_path)
    assert (summary.encoded, summary.forward_passes, summary.reused) == (2, 1, 1)
    frame = Store(tmp_path).resolve_table("m").latest()
    by_id = dict(zip(frame.ids.tolist(), frame.vectors))
    np.testing.assert_array_equal(by_id["5"], by_id["2"])
    np.testing.assert_allclose(by_id["4"], word2vec.encode(["call me now"])[0], atol=1e-6)
    all_rows, _ = Store(tmp_path).resolve_table("m").scan(["entity_id", "n_tokens"])
    assert all_rows.num_rows == 6 and set(all_rows.column("n_tokens").to_pylist()) <= {1, 2, 3}


def test_reused_text_whose_first_record_was_dropped_is_still_encoded(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\na,shared words\nb,shared words\na,other words\n")
    summary = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path, on_duplicate="last")
    assert summary.encoded == 2
    frame = Store(tmp_path).resolve_table("m").latest()
    by_id = dict(zip(frame.ids.tolist(), frame.vectors))
    np.testing.assert_allclose(by_id["b"], word2vec.encode(["shared words"])[0], atol=1e-6)
    np.testing.assert_allclose(by_id["a"], word2vec.encode(["other words"])[0], atol=1e-6)


def test_oov_share_and_zero_vectors_are_reported(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\n1,hello qwzxjk\n2,vbnmrt qwzxjk\n")
    summary = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path)
    assert summary.oov_share == pytest.approx(3 / 4)
    assert summary.zero_vectors == 1
    table = Store(tmp_path).resolve_table("m")
    flags, _ = table.scan(["entity_id", "zero_vector", "n_oov"])
    assert dict(zip(flags.column("entity_id").to_pylist(), flags.column("zero_vector").to_pylist())) == {"1": False, "2": True}


def test_a_changed_label_is_a_change_even_with_the_same_text(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text,label\n1,win a prize,spam\n2,see you soon,ham\n")
    source = TextSource(str(path), id_col="id", keep=("label",))
    materialize(source, "m", "word2vec", store=tmp_path / "s")
    path.write_text("id,text,label\n1,win a prize,ham\n2,see you soon,ham\n")
    summary = materialize(source, "m", "word2vec", store=tmp_path / "s")
    assert (summary.encoded, summary.skipped) == (1, 1)
    frame = Store(tmp_path / "s").resolve_table("m").latest(["label"])
    assert dict(zip(frame.ids.tolist(), frame.columns.column("label").to_pylist())) == {"1": "ham", "2": "ham"}


def test_kept_names_that_clash_with_system_columns_are_refused(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text,deleted\n1,hello,yes\n")
    with pytest.raises(SourceError, match="cannot keep column\\(s\\) 'deleted'"):
        materialize(TextSource(str(path), id_col="id", keep=("deleted",)), "m", "word2vec", store=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_full_sync_keeps_entities_whose_row_failed_this_time(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\n1,hello\n2,goodbye\n")
    materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path)
    path.write_text("id,text\n1,hello\n2,\n")
    summary = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=tmp_path, full_sync=True)
    assert (summary.failed, summary.deleted) == (1, 0)
    assert sorted(Store(tmp_path).resolve_table("m").latest().ids.tolist()) == ["1", "2"]


def test_a_store_path_with_spaces_and_accents_reads_back(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\n1,hello\n2,hello\n")
    store = tmp_path / "my störe"
    materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=store)
    again = materialize(TextSource(str(path), id_col="id"), "m", "word2vec", store=f"file://{store}")
    assert again.skipped == 2
    assert len(Store(store).resolve_table("m").latest()) == 2


def test_token_view_text_without_words_is_a_failed_row(tmp_path, word2vec):
    path = tmp_path / "msgs.csv"
    path.write_text("id,text\n1,hello world\n2,!!! ???\n")
    summary = materialize(TextSource(str(path), id_col="id"), "t", "word2vec", store=tmp_path, encoder_options={"granularity": "token"})
    assert (summary.encoded, summary.failed, summary.tokens) == (1, 1, 2)
    assert summary.failures == [{"line": 3, "entity_id": "2", "reason": "no words"}]
