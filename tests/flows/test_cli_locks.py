"""Locks that fit the work, with two real processes: writers of two tables of a view run side by
side, two writers of one table exclude each other, and a queued writer says whom it waits for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import GLOVE, assert_user_error, need, snapshot

ROOT = Path(__file__).resolve().parents[2]
GLOVE_W2V = GLOVE / "glove.6B.50d.top5k.w2v.txt"
HOLD = (
    "import sys, time\n"
    "from featurestore.locks import view_lock\n"
    "store, view, purpose, encoder_id, seconds = sys.argv[1:]\n"
    "with view_lock(view, purpose, store=store, encoder_id=encoder_id or None):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(float(seconds))\n"
)


@pytest.fixture(scope="module")
def two_tables(tmp_path_factory, sms_lines, word2vec):
    """View 'sms' with a word2vec and a GloVe table (20 SMS each); returns the store and the two encoder ids."""
    need(GLOVE_W2V)
    from flows.cli.main import main

    root = tmp_path_factory.mktemp("locks")
    (root / "SMSSpamCollection").write_text("\n".join(sms_lines[:20]) + "\n", encoding="utf-8")
    ids = {}
    for name, encoder in (("word2vec", "word2vec"), ("glove", f"w2v:{GLOVE_W2V}")):
        assert main(["materialize", str(root / "SMSSpamCollection"), "--view", "sms", "--encoder", encoder, "--store", str(root / "store"),
                     "--id-col", "@line", "--runner", "inline", "--quiet"]) == 0
    from featurestore.store import Store

    for table in Store(root / "store").tables("sms"):
        ids["glove" if table.meta.encoder_name == "w2v" else "word2vec"] = table.meta.encoder_id
    return root / "store", ids


def hold(store: Path, encoder_id: str | None, seconds: float, purpose: str = "materialize") -> subprocess.Popen:
    """A process holding the lock of sms/encoder_id (the whole view when None) for ``seconds``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store), "sms", purpose, encoder_id or "", str(seconds)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def featurestore(*args: object, timeout: float = 120) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "flows.cli.main", *map(str, args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def test_two_tables_of_a_view_are_written_side_by_side_one_table_by_one_writer(two_tables):
    store, ids = two_tables
    holder = hold(store, ids["word2vec"], 60)
    try:
        code, out, err = featurestore("index", "build", "--view", "sms", "--encoder", ids["glove"], "--store", store, "--json")
        assert code == 0, err
        assert json.loads(out)["encoder_id"] == ids["glove"]
        before = snapshot(store)
        result = featurestore("index", "build", "--view", "sms", "--encoder", "word2vec", "--store", store)
        assert_user_error(result, f"view sms ({ids['word2vec']}) is being written by another run (materialize, pid {holder.pid}, since ")
        assert snapshot(store) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_whole_view_lock_excludes_every_table_of_it(two_tables):
    store, ids = two_tables
    holder = hold(store, None, 60, purpose="refresh")
    try:
        before = snapshot(store)
        result = featurestore("index", "build", "--view", "sms", "--encoder", ids["glove"], "--store", store)
        assert_user_error(result, f"is being written by another run (refresh, pid {holder.pid}, since ")
        assert snapshot(store) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_queued_writer_says_whom_it_waits_for_then_runs(two_tables):
    store, ids = two_tables
    holder = hold(store, ids["word2vec"], 2.5)
    started = time.monotonic()
    code, out, err = featurestore("index", "build", "--view", "sms", "--encoder", "word2vec", "--store", store, "--wait", "60", "--json")
    holder.wait(timeout=30)
    assert code == 0, err
    assert json.loads(out)["encoder_id"] == ids["word2vec"]
    first = err.splitlines()[0]
    assert first.startswith(f"featurestore: waiting for the lock on sms/{ids['word2vec']} held by materialize, pid {holder.pid}, since ")
    assert first.endswith(" UTC (0 s)") and time.monotonic() - started < 60


def test_a_wait_that_runs_out_names_the_holder(two_tables):
    store, ids = two_tables
    holder = hold(store, ids["word2vec"], 60)
    try:
        before = snapshot(store)
        code, out, err = featurestore("index", "build", "--view", "sms", "--encoder", "word2vec", "--store", store, "--wait", "1")
        assert code == 2 and "Traceback" not in err
        waiting, error = err.splitlines()
        assert waiting.startswith("featurestore: waiting for the lock on sms/")
        assert error.startswith(f"featurestore: error: view sms ({ids['word2vec']}) is still being written by another run (materialize, pid {holder.pid}")
        assert error.endswith("after 1 s of waiting; try again when it finishes, or pass a longer --wait")
        assert snapshot(store) == before
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_bad_wait_is_a_user_error(two_tables, cli, monkeypatch):
    monkeypatch.setenv("FEATURESTORE_LOCK_WAIT", "0")  # --wait sets it in this process: restored after the test
    store, _ = two_tables
    before = snapshot(store)
    assert_user_error(cli("index", "update", "--view", "sms", "--encoder", "word2vec", "--store", store, "--wait", "-1"),
                      "the lock wait (--wait, FEATURESTORE_LOCK_WAIT) must be a number of seconds >= 0, e.g. 60. Got '-1.0' instead.")
    assert snapshot(store) == before
