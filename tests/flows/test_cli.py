"""The command line: output contracts, and every bad input -> one line, exit 2, store unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from featurestore.store import Store, TableMeta, vectors_to_binary
from tests.conftest import GLOVE, assert_user_error, need, snapshot


@pytest.fixture
def store_with_view(tmp_path, sms_file, cli, word2vec):
    """A store holding view 'sms' (word2vec, 30 rows), made through the CLI without Prefect."""
    store = tmp_path / "store"
    code, out, err = cli("materialize", sms_file(30), "--view", "sms", "--encoder", "word2vec", "--store", store,
                         "--id-col", "@line", "--keep", "label", "--runner", "inline", "--json")
    assert code == 0, err
    assert json.loads(out)["encoded"] == 30
    return store


def test_materialize_json_has_the_documented_keys(store_with_view, sms_file, cli):
    code, out, _ = cli("materialize", sms_file(30), "--view", "sms", "--encoder", "word2vec", "--store", store_with_view,
                       "--id-col", "@line", "--keep", "label", "--json")
    summary = json.loads(out)
    assert code == 0
    for key in ("view", "encoder_id", "rows_seen", "encoded", "skipped", "failed", "table_version", "seconds"):
        assert key in summary
    assert (summary["encoded"], summary["skipped"], summary["table_version"]) == (0, 30, 0)


def test_info_and_encoders_json(store_with_view, cli):
    code, out, _ = cli("info", "--store", store_with_view, "--json")
    data = json.loads(out)
    assert code == 0
    [table] = data["tables"]
    assert (table["view"], table["rows"], table["dim"], table["version"]) == ("sms", 30, 100, 0)
    assert data["recent_runs"][-1]["encoded"] == 30
    code, out, _ = cli("encoders", "--json")
    assert code == 0 and {"minilm", "word2vec"} <= {r["name"] for r in json.loads(out)}


def test_info_on_an_empty_store_says_so(tmp_path, cli):
    code, out, _ = cli("info", "--store", tmp_path / "none")
    assert code == 0 and "holds no views yet" in out
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize(
    ("make_input", "extra", "message"),
    [
        (lambda d: d / "missing.csv", [], "source file not found"),
        (lambda d: (d / "bad.csv").write_bytes(b"id,text\n1,ok\n2,\xff\xfe\n") and d / "bad.csv", ["--id-col", "id"], "line 3 is not valid UTF-8"),
        (lambda d: (d / "c.csv").write_text("id,body\n1,hi\n") and d / "c.csv", ["--id-col", "id", "--text-col", "bdy"], "Did you mean 'body'?"),
        (lambda d: (d / "c.csv").write_text("id,text\n1,hi\n") and d / "c.csv", ["--id-col", "idd"], "id column 'idd' not found"),
        (lambda d: (d / "empty.csv").write_text("") or d / "empty.csv", [], "is empty"),
        (lambda d: (d / "e.csv").write_text("id,text\n1,hi\n2,\n") and d / "e.csv", ["--id-col", "id", "--strict"], "line 3: empty text"),
        (lambda d: (d / "dup.csv").write_text("id,text\n1,hi\n1,ho\n") and d / "dup.csv", ["--id-col", "id"], "duplicate ids with different content: '1' (lines 2 and 3)"),
        (lambda d: (d / "c.csv").write_text("id,text\n1,hi\n") and d / "c.csv", ["--id-col", "id", "--encoder", "word2vc"], "Did you mean 'word2vec'?"),
        (lambda d: (d / "c.csv").write_text("id,text\n1,hi\n") and d / "c.csv", ["--id-col", "id", "--format", "xml"], "unknown format 'xml'"),
        (lambda d: (d / "c.csv").write_text("id,text\n1,hi\n") and d / "c.csv", ["--id-col", "id", "--on-duplicate", "first"], "on_duplicate must be 'error' or 'last'"),
    ],
    ids=["missing-file", "non-utf8", "misspelled-text-col", "misspelled-id-col", "empty-file", "empty-text-strict",
         "duplicate-ids", "unknown-encoder", "unknown-format", "bad-on-duplicate"],
)
def test_bad_input_is_one_line_exit_2_and_store_unchanged(store_with_view, tmp_path, cli, make_input, extra, message):
    path = make_input(tmp_path)
    before = snapshot(store_with_view)
    args = ["materialize", path, "--view", "sms", "--store", store_with_view, "--runner", "inline"]
    if "--encoder" not in extra:
        args += ["--encoder", "word2vec"]
    assert_user_error(cli(*args, *extra), message)
    assert snapshot(store_with_view) == before
    assert Store(store_with_view).resolve_table("sms").version() == 0


def test_a_view_with_another_dimension_is_refused(tmp_path, sms_file, cli, word2vec):
    store = Store(tmp_path / "store")
    table = store.table("sms", word2vec.encoder_id)
    from datetime import datetime, timezone

    import pyarrow as pa

    now = datetime.now(timezone.utc)
    table.append(
        pa.table({"entity_id": ["x"], "content_hash": ["h"], "encoder_id": [word2vec.encoder_id],
                  "embedding": vectors_to_binary(np.ones((1, 8), np.float32)),
                  "event_timestamp": pa.array([now], pa.timestamp("us", tz="UTC")),
                  "created_at": pa.array([now], pa.timestamp("us", tz="UTC")), "deleted": [False]}),
        TableMeta(view="sms", encoder_id=word2vec.encoder_id, encoder_name="word2vec", encoder_spec={}, dim=8, metric="cosine", modality="text"),
    )
    before = snapshot(store.path)
    result = cli("materialize", sms_file(10), "--view", "sms", "--encoder", "word2vec", "--store", store.path, "--id-col", "@line")
    assert_user_error(result, "with dim=8, but this write has dim=100")
    assert snapshot(store.path) == before


def test_an_unwritable_store_is_refused(tmp_path, sms_file, cli):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    result = cli("materialize", sms_file(10), "--view", "sms", "--encoder", "word2vec", "--store", blocker / "store", "--id-col", "@line")
    assert_user_error(result, "cannot write to the store")
    assert blocker.read_text() == ""


def test_duplicate_ids_last_wins_only_with_the_flag(tmp_path, cli, word2vec):
    path = tmp_path / "dup.csv"
    path.write_text("id,text\n1,hi\n1,ho\n")
    code, out, err = cli("materialize", path, "--view", "v", "--encoder", "word2vec", "--store", tmp_path / "s",
                         "--id-col", "id", "--on-duplicate", "last", "--runner", "inline", "--json")
    assert code == 0, err
    assert json.loads(out)["encoded"] == 1


def test_real_process_exit_code_and_stderr(tmp_path):
    """The installed entry point, as a user runs it."""
    exe = [sys.executable, "-c", "from flows.cli.main import main; main()"]
    out = subprocess.run([*exe, "materialize", str(tmp_path / "nope.csv"), "--view", "v", "--encoder", "word2vec",
                          "--store", str(tmp_path / "s")], capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert out.stderr.strip() == f"featurestore: error: source file not found: {tmp_path / 'nope.csv'}"
    assert not (tmp_path / "s").exists()
    usage = subprocess.run([*exe, "materialize", "x.csv"], capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "Missing option '--view'" in usage.stderr


def test_bad_device_and_unknown_store_scheme_are_user_errors(tmp_path, sms_file, cli):
    path = sms_file(5)
    assert_user_error(cli("materialize", path, "--view", "v", "--encoder", "minilm", "--store", tmp_path / "s", "--id-col", "@line", "--device", "gpu"),
                      "device must be one of auto, cpu, cuda, cuda:N. Got 'gpu' instead.")
    assert_user_error(cli("materialize", path, "--view", "v", "--encoder", "word2vec", "--store", "ftp://host/x", "--id-col", "@line"),
                      "store 'ftp://host/x': ftp:// is not a storage the store can use; give a local folder or one of s3://")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--granularity", "word"], "--granularity must be 'sentence' or 'token'. Got 'word' instead."),
        (["--runner", "spark"], "runner must be one of: local, inline, dask. Got 'spark' instead."),
        (["--runner", "dask", "--dask-workers", "0"], "--dask-workers and --dask-threads must be at least 1. Got 0 and 1 instead."),
        (["--layers", "last4"], "encoder 'word2vec' does not take --layers; leave it out or use an encoder that does"),
        (["--long-text", "windows"], "encoder 'word2vec' does not take --long-text; leave it out or use an encoder that does"),
        # the encoder itself checks the options it takes (the last --encoder given wins)
        (["--encoder", "minilm", "--layers", "last4"], "--layers last4 only apply to --granularity token; pass --granularity token or leave them out"),
        (["--encoder", "minilm", "--granularity", "token", "--subword", "last"], "--subword must be one of 'first', 'mean'. Got 'last' instead."),
        (["--encoder", "minilm", "--granularity", "token", "--long-text", "windows"],
         "--long-text applies to --granularity sentence; token level always reads every word in windows"),
        (["--encoder", "minilm", "--long-text", "chunks"], "--long-text must be 'truncate' or 'windows'. Got 'chunks' instead."),
    ],
)
def test_bad_materialize_options_leave_the_store_unchanged(store_with_view, sms_file, cli, extra, message):
    before = snapshot(store_with_view)
    result = cli("materialize", sms_file(30), "--view", "sms", "--encoder", "word2vec", "--store", store_with_view,
                 "--id-col", "@line", "--keep", "label", *extra)
    assert_user_error(result, message)
    assert snapshot(store_with_view) == before


def test_search_refuses_a_view_whose_encoder_now_has_other_weights(tmp_path, cli):
    """Queries are encoded by the view's encoder rebuilt from the table's record; vectors that
    file now gives would not meet the stored ones, so the search is refused, naming both ids."""
    from featurestore.encoders import get_encoder

    need(GLOVE)
    lines = (GLOVE / "glove.6B.50d.top5k.txt").read_text(encoding="utf-8").splitlines()[:300]
    vectors, texts, store = tmp_path / "glove.txt", tmp_path / "notes.txt", tmp_path / "s"
    vectors.write_text("\n".join(lines) + "\n", encoding="utf-8")
    texts.write_text("the people of the city\nit was a good year\n", encoding="utf-8")
    ref = f"w2v:{vectors}"
    common = ("--view", "notes", "--store", store)
    assert cli("materialize", texts, *common, "--encoder", ref, "--id-col", "@line", "--runner", "inline")[0] == 0
    assert cli("index", "build", *common)[0] == 0
    written = Store(store).resolve_table("notes").meta.encoder_id
    vectors.write_text("\n".join(lines[:200]) + "\n", encoding="utf-8")  # other weights under the same name
    before = snapshot(store)
    assert_user_error(cli("search", *common, "--text", "the city"),
                      f"view 'notes' expects encoder {written}, but {ref!r} is {get_encoder(ref).encoder_id} here; "
                      "its weights or options differ, so inputs cannot be encoded the same way")
    assert snapshot(store) == before


def test_compact_and_search_bad_input(store_with_view, tmp_path, cli):
    before = snapshot(store_with_view)
    assert_user_error(cli("compact", "--view", "nope", "--store", store_with_view), "view 'nope' does not exist")
    bad = tmp_path / "q.npy"
    bad.write_text("not numpy")
    assert_user_error(cli("search", "--view", "sms", "--store", store_with_view, "--vector-file", bad), "cannot read query vectors from")
    assert snapshot(store_with_view) == before
