"""The materialize flow on a real Prefect server: tasks, summary, artifact, resumability."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from featurestore.sources import TextSource
from featurestore.store import Store
from tests.flows.conftest import read_artifact

pytestmark = pytest.mark.slow


def test_flow_encodes_commits_and_publishes_an_artifact(prefect_server, tmp_path, sms_file, word2vec):
    from flows.runner import run

    source = TextSource(str(sms_file(120)), format="sms", id_col="@line", keep=("label",))
    summary = run(source, "sms", "word2vec", store=str(tmp_path), shard_size=50)
    assert (summary.rows_seen, summary.encoded, summary.shards, summary.table_version) == (120, 120, 3, 2)
    markdown = read_artifact(f"materialize-sms-{word2vec.encoder_id}")
    assert "| encoded | 120 |" in markdown and "| table version | 2 |" in markdown and "OOV share" in markdown
    record = Store(tmp_path).runs(limit=1)[-1]  # what `featurestore runs` shows: the Prefect run it belongs to
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        flow_run = client.request("GET", f"/flow_runs/{record['flow_run_id']}").json()
    assert record["kind"] == "materialize" and flow_run["id"] == record["flow_run_id"]
    again = run(source, "sms", "word2vec", store=str(tmp_path))
    assert (again.encoded, again.skipped) == (0, 120)


def test_cli_runs_the_flow_with_a_progress_hook(prefect_server, tmp_path, sms_file, word2vec):
    from flows.runner import run

    seen: list[tuple[int, int]] = []
    source = TextSource(str(sms_file(90)), format="sms", id_col="@line", keep=("label",))
    summary = run(source, "sms", "word2vec", store=str(tmp_path), progress=lambda d, t: seen.append((d, t)), shard_size=40)
    assert summary.encoded == 90
    assert seen == [(40, 90), (80, 90), (90, 90), (90, 90)]


def test_a_killed_run_leaves_a_readable_table_and_the_rerun_adds_no_duplicates(tmp_path, sms_file, minilm):
    """kill -9 in the middle of a materialize, then run it again."""
    store = tmp_path / "store"
    path = sms_file(400)
    cmd = [sys.executable, "-c", "from flows.cli.main import main; main()", "materialize", str(path), "--view", "sms",
           "--encoder", "minilm", "--store", str(store), "--id-col", "@line", "--keep", "label", "--shard-size", "40",
           "--runner", "inline", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    log = store / "views" / "sms"
    deadline = time.time() + 180
    while time.time() < deadline:
        commits = list(log.glob("*/_delta_log/0000000000000000000[1-9].json"))
        if commits or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run finished before it could be killed: {proc.stderr.read()}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    table = Store(store).resolve_table("sms")
    committed = len(table.latest())
    assert 0 < committed < 400 and committed % 40 == 0
    rerun = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    summary = json.loads(rerun.stdout)
    assert summary["encoded"] == 400 - committed and summary["skipped"] == committed
    all_rows, _ = table.scan(["entity_id"])
    assert all_rows.num_rows == 400 and len(set(all_rows.column("entity_id").to_pylist())) == 400


def test_index_flow_builds_then_updates_after_materialize(prefect_server, tmp_path, sms_file, word2vec):
    from featurestore.materialization import materialize
    from flows.index import index_flow

    source = TextSource(str(sms_file(60)), format="sms", id_col="@line", keep=("label",))
    materialize(source, "sms", "word2vec", store=str(tmp_path))
    built = index_flow("sms", store=str(tmp_path))
    assert (built.rebuilt, built.added, built.info.rows) == (True, None, 60)
    more = TextSource(str(sms_file(70, name="more.sms")), format="sms", id_col="@line", keep=("label",))
    materialize(more, "sms", "word2vec", store=str(tmp_path))
    updated = index_flow("sms", store=str(tmp_path))
    assert (updated.rebuilt, updated.added, updated.info.rows) == (False, 10, 70)
    assert "| rows indexed | 70 |" in read_artifact(f"index-sms-{word2vec.encoder_id}")
