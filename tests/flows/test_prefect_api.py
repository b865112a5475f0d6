"""The default Prefect path on a busy machine: real `featurestore` processes, each with its own API server.

No test harness server here: each command starts Prefect the way a user's does (no
PREFECT_API_URL), with TMPDIR and FEATURESTORE_WORK_DIR in the test's folder, so the per-process
databases, their cleanup and the template database are all seen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from featurestore.store import Store
from tests.conftest import W2V, need, snapshot

ROOT = Path(__file__).resolve().parents[2]


def command_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no Prefect API configured, Prefect's home untouched."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(tmp_path / "tmp"), FEATURESTORE_WORK_DIR=str(tmp_path / "work"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def materialize(source: Path, view: str, store: Path, env: dict[str, str], *more: str) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "flows.cli.main", "materialize", str(source), "--view", view, "--encoder", "word2vec",
            "--store", str(store), "--format", "sms", "--id-col", "@line", "--keep", "label", "--json", *more]
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_flow_commands_at_once_all_succeed_with_clean_output(tmp_path, sms_file):
    """Four materialize flows start Prefect at once (as `make demo` beside other commands did):
    each gets its own server and database, all exit 0 with nothing on stderr, their tables are
    right, and no server folder is left behind. The first start makes the template database
    under a lock while the others wait for it."""
    need(W2V)
    env = command_env(tmp_path)
    source = sms_file(40)
    started = time.monotonic()
    procs = [materialize(source, f"v{i}", tmp_path / f"store{i % 2}", env) for i in range(4)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        progress = [line for line in err.splitlines() if line.startswith(f"featurestore: materialize v")]
        assert progress and progress[-1].endswith("40/40 rows"), err  # the progress line on stderr, nothing else
        assert err.splitlines() == progress, err  # no traceback, no uvicorn or Prefect lines, shutdown included
        assert json.loads(out)["encoded"] == 40
    for i in range(4):
        table = Store(tmp_path / f"store{i % 2}").resolve_table(f"v{i}", "word2vec")
        assert table.version() == 0 and sorted(table.latest().ids.tolist(), key=int) == [str(n) for n in range(1, 41)]
    assert list((tmp_path / "tmp").iterdir()) == []  # each server's folder and database removed at exit
    assert [p.name for p in (tmp_path / "work" / "prefect").glob("*.db")] != []  # the template, made once
    print(f"4 concurrent materialize flows: {time.monotonic() - started:.1f} s")


@pytest.fixture
def stored(tmp_path, sms_file, cli, word2vec):
    """A store with view 'sms' (30 rows, written without Prefect) and a source that adds 10 rows to it."""
    store = tmp_path / "store"
    code, _, err = cli("materialize", sms_file(30), "--view", "sms", "--encoder", "word2vec", "--store", store,
                       "--id-col", "@line", "--keep", "label", "--runner", "inline")
    assert code == 0, err
    return store, sms_file(40, name="more.txt")


def assert_prefect_unavailable(proc: subprocess.Popen[str], store: Path, before: dict[str, int], reason: str) -> None:
    code = proc.wait(timeout=300)
    out, err = proc.communicate()
    assert code == 2, (code, out, err)
    assert err.startswith("featurestore: error: ") and err.count("\n") == 1, err
    assert "--runner inline" in err and "PREFECT_API_URL" in err and reason in err, err
    assert "Traceback" not in out + err
    assert snapshot(store) == before  # the plan and its staging discarded, no table version written


def test_a_server_that_cannot_start_is_one_line_and_leaves_the_store(stored, tmp_path):
    """A database the server cannot open: the server exits, the command says why in one line at once."""
    store, more = stored
    before = snapshot(store)
    (tmp_path / "a-file").write_text("not a folder")
    env = command_env(tmp_path, PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path / 'a-file' / 'prefect.db'}")
    started = time.monotonic()
    assert_prefect_unavailable(materialize(more, "sms", store, env), store, before, "unable to open database file")
    assert time.monotonic() - started < 120  # noticed when the server exits, not at the 180 s deadline
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_server_slower_than_its_timeout_is_one_line(stored, tmp_path):
    store, more = stored
    before = snapshot(store)
    env = command_env(tmp_path, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    assert_prefect_unavailable(materialize(more, "sms", store, env), store, before, "raise PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS")


def test_an_unreachable_prefect_api_url_is_one_line(stored, tmp_path):
    store, more = stored
    before = snapshot(store)
    env = command_env(tmp_path, PREFECT_API_URL="http://127.0.0.1:9/api")  # port 9 (discard): nothing listens
    assert_prefect_unavailable(materialize(more, "sms", store, env), store, before, "does not answer")
