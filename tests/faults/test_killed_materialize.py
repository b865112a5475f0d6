"""kill -9 of real ``featurestore materialize`` processes, with Prefect's local runner and with Dask.

No process of the killed run outlives it (the Prefect server, Dask's workers); the next run of
the view clears the dead run's staging, writes exactly the rows that were not committed, and a
successful run leaves nothing behind (staging, plan files, temporary files, processes).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from featurestore.store import Store
from tests.faults.runs import command, environment, start

pytestmark = pytest.mark.slow

ROWS, SHARD = 300, 20  # 15 shard commits: a kill after the first leaves most rows to the re-run
GONE_WITHIN_S = 20  # the server notices its parent's death within a second; uvicorn's stop takes the rest


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory) -> Path:
    """One Prefect database for the module's runs (a fresh one costs a migration at each start)."""
    return tmp_path_factory.mktemp("prefect-home")


def materialize(source: Path, store: Path, *extra: object) -> tuple[object, ...]:
    return ("materialize", source, "--view", "sms", "--encoder", "word2vec", "--format", "sms", "--id-col", "@line",
            "--keep", "label", "--store", store, "--shard-size", SHARD, *extra)


def first_commit(store: Path) -> bool:
    return any((store / "views" / "sms").glob("*/_delta_log/00000000000000000000.json"))


def staged_files(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in (store / "_staging").rglob("*") if p.is_file())


def committed_ids(store: Path) -> list[str]:
    rows, _ = Store(store).resolve_table("sms").scan(["entity_id"])
    return rows.column("entity_id").to_pylist()


def kill_after_first_commit(cmd: list[str], env: dict[str, str], logs: Path, store: Path) -> tuple[dict[int, str], dict[int, str]]:
    """Start ``cmd``, kill -9 it once a shard is committed; its descendants before the kill, and the
    ones still running ``GONE_WITHIN_S`` after it."""
    run = start(cmd, env, logs)
    try:
        run.wait_for(lambda: first_commit(store), "a first shard commit")
        run.watch()
        tree = dict(zip(run.seen, run.commands()))
        os.kill(run.proc.pid, signal.SIGKILL)
        assert run.proc.wait(timeout=30) == -signal.SIGKILL
        return tree, run.survivors(GONE_WITHIN_S)
    finally:
        run.kill()


def check_dead_run_left(store: Path) -> int:
    """What the killed run left: some committed shards and its staging (plan and shards). Returns the rows committed."""
    assert any(name.endswith("plan.json") for name in staged_files(store))
    ids = committed_ids(store)
    assert 0 < len(ids) < ROWS and len(ids) % SHARD == 0
    return len(ids)


def check_rows_and_nothing_left(store: Path, summary: dict, done: int) -> None:
    assert (summary["encoded"], summary["skipped"]) == (ROWS - done, done)
    ids = committed_ids(store)
    assert len(ids) == ROWS and len(set(ids)) == ROWS  # every row once: nothing lost, nothing written twice
    assert len(Store(store).resolve_table("sms").latest()) == ROWS
    assert not (store / "_staging").exists()


def test_a_killed_prefect_run_leaves_no_process_and_the_next_run_clears_its_staging(tmp_path, sms_file, word2vec, prefect_home):
    store, source = tmp_path / "store", sms_file(ROWS)
    env = environment(tmp_path / "tmp", prefect_home)
    tree, left = kill_after_first_commit(command(*materialize(source, store)), env, tmp_path / "killed", store)
    assert any("uvicorn" in cmd and "prefect_server" in cmd for cmd in tree.values()), tree  # the flow's API server, under the parent watch
    assert left == {}, f"processes of the killed run still running {GONE_WITHIN_S} s after it: {left}"
    done = check_dead_run_left(store)

    rerun_tmp = tmp_path / "tmp-rerun"
    rerun = start(command(*materialize(source, store), "--json"), environment(rerun_tmp, prefect_home), tmp_path / "rerun")
    try:
        code = rerun.wait()
        out, err = rerun.output()
        assert code == 0, err[-2000:]
        check_rows_and_nothing_left(store, json.loads(out), done)
        assert list(rerun_tmp.iterdir()) == []  # no temporary file or folder either
        assert rerun.seen and rerun.survivors(GONE_WITHIN_S) == {}  # its server ended with it
    finally:
        rerun.kill()


def test_a_killed_dask_run_leaves_no_process_and_the_next_run_writes_the_rest(tmp_path, sms_file, word2vec, prefect_home, cli):
    pytest.importorskip("prefect_dask")
    store, source = tmp_path / "store", sms_file(ROWS)
    env = environment(tmp_path / "tmp", prefect_home)
    cmd = command(*materialize(source, store, "--runner", "dask", "--dask-workers", 2))
    tree, left = kill_after_first_commit(cmd, env, tmp_path / "killed", store)
    workers = [cmd for cmd in tree.values() if "multiprocessing.spawn" in cmd]
    assert len(workers) == 2 and any("uvicorn" in cmd for cmd in tree.values()), tree
    assert left == {}, f"processes of the killed run still running {GONE_WITHIN_S} s after it: {left}"
    done = check_dead_run_left(store)

    code, out, err = cli(*materialize(source, store, "--runner", "inline", "--json"))
    assert code == 0, err
    check_rows_and_nothing_left(store, json.loads(out), done)
