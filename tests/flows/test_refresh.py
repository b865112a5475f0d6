"""The refresh flow: materialize -> index -> drift -> retrain, nothing when nothing changed, one writer per view,
and a served schedule that fires by itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

from featurestore.locks import view_lock
from featurestore.store import Store
from tests.conftest import bucket_keys, snapshot
from tests.flows.conftest import project, read_artifact

pytestmark = pytest.mark.slow


def no_prefect_steps(monkeypatch) -> None:
    """Make any materialize, index or train flow fail the test: nothing may start Prefect work."""

    def refuse(*args, **kwargs):
        raise AssertionError("a Prefect flow ran although nothing changed")

    import flows.index
    import flows.materialize
    import flows.train

    for module, name in ((flows.materialize, "materialize_flow"), (flows.index, "index_flow"), (flows.train, "train_flow")):
        monkeypatch.setattr(module, name, refuse)


def test_refresh_encodes_indexes_trains_then_does_nothing_then_only_the_new_rows(prefect_server, tmp_path, sms_file, sms_lines, word2vec, monkeypatch):
    from flows.refresh import run_refresh

    config = project(tmp_path, sms_file)
    first = run_refresh(config).to_dict()["views"][0]
    enc, head = first["encoders"][0], first["heads"][0]
    assert (enc["encoded"], enc["table_version"], enc["index"]["status"], enc["index"]["rows"]) == (60, 0, "built", 60)
    assert (head["status"], head["version"], head["reason"]) == ("retrained", 1, "not trained yet") and "f1" in head["metrics"]
    markdown = read_artifact("refresh-sms")
    assert "| 60 | 60 | 0 | 0 | 0 | None -> 0 | built: 60 rows" in markdown and "head **spam**: retrained as v1" in markdown

    with monkeypatch.context() as m:
        no_prefect_steps(m)
        again = run_refresh(config).to_dict()
    enc, head = again["views"][0]["encoders"][0], again["views"][0]["heads"][0]
    assert not again["changed"] and (enc["encoded"], enc["skipped"], enc["index"]["status"], enc["drift"]) == (0, 60, "current", None)
    assert head == {"name": "spam", "status": "current"}

    sms_file(70)  # ten more messages in the same file
    third = run_refresh(config, runner="inline").to_dict()["views"][0]
    enc, head = third["encoders"][0], third["heads"][0]
    assert (enc["encoded"], enc["skipped"], enc["previous_version"], enc["index"]["status"], enc["index"]["rows"]) == (10, 60, 0, "updated", 70)
    assert enc["drift"]["base_version"] == 0 and "mean_shift_relative_l2" in enc["drift"]
    assert (head["status"], head["version"]) == ("retrained", 2) and "version 0" in head["reason"]
    assert len(Store(tmp_path / "store").resolve_table("sms").latest()) == 70


def test_a_refresh_of_a_locked_view_is_skipped_and_writes_nothing(tmp_path, sms_file, word2vec, cli):
    from flows.refresh import refresh

    config = project(tmp_path, sms_file, 30, index=False, heads=False)
    refresh(config, runner="inline")
    sms_file(40)
    store = tmp_path / "store"
    before = snapshot(store)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another writer, in another thread: its own open file, so flock conflicts
        with view_lock("sms", "refresh", store=str(store)):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        result = refresh(config, runner="inline").to_dict()["views"][0]
        assert result["skipped"].startswith("view sms is being written by another run (refresh, pid ") and not result["changed"]
        code, _, err = cli("materialize", tmp_path / "SMSSpamCollection", "--view", "sms", "--encoder", "word2vec", "--store", store,
                           "--id-col", "@line", "--keep", "label", "--runner", "inline")
        assert code == 2 and "view sms is being written by another run" in err
        assert {k: v for k, v in snapshot(store).items() if not k.startswith("locks/")} == before
    finally:
        release.set()
        holder.join()
    assert refresh(config, runner="inline").to_dict()["views"][0]["encoders"][0]["encoded"] == 10


def test_a_head_whose_options_changed_in_the_project_file_is_retrained(tmp_path, sms_file, word2vec):
    from flows.refresh import refresh

    config = project(tmp_path, sms_file, 60, index=False)
    assert refresh(config, runner="inline").to_dict()["views"][0]["heads"][0]["version"] == 1
    assert refresh(config, runner="inline").to_dict()["views"][0]["heads"][0] == {"name": "spam", "status": "current"}
    data = yaml.safe_load(config.read_text())
    data["heads"][0]["options"]["n_splits"] = 3
    config.write_text(yaml.safe_dump(data))
    head = refresh(config, runner="inline").to_dict()["views"][0]["heads"][0]
    assert (head["status"], head["version"]) == ("retrained", 2) and head["reason"] == "option n_splits is 3 in the project file; v1 was trained with 2"


def test_an_index_build_waits_for_no_one_and_refuses_a_view_being_written(tmp_path, sms_file, word2vec, cli):
    from flows.refresh import refresh

    config = project(tmp_path, sms_file, 30, index=False, heads=False)
    refresh(config, runner="inline")
    store = tmp_path / "store"
    with view_lock("sms", "refresh", store=str(store)):
        result: list = []
        worker = threading.Thread(target=lambda: result.append(cli("index", "build", "--view", "sms", "--store", store)))
        worker.start()
        worker.join()
    code, _, err = result[0]
    assert code == 2 and "view sms is being written by another run (refresh, pid " in err
    assert not (store / "indexes").exists()


def test_two_refreshes_at_once_write_the_table_once(tmp_path, sms_file, word2vec):
    from flows.refresh import refresh

    config = project(tmp_path, sms_file, 60, index=False, heads=False)
    start = threading.Barrier(2)
    results: list[dict] = []

    def one() -> None:
        start.wait()
        results.append(refresh(config, runner="inline").to_dict()["views"][0])

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    encoded = sorted(r["encoders"][0]["encoded"] for r in results if "skipped" not in r)
    assert encoded in ([60], [0, 60])  # the loser was skipped, or started after the winner finished
    table = Store(tmp_path / "store").resolve_table("sms")
    assert len(table.latest()) == 60 and table.scan(["entity_id"])[0].num_rows == 60


def sqlalchemy_2_1() -> bool:
    import sqlalchemy

    return tuple(int(p) for p in sqlalchemy.__version__.split(".")[:2]) >= (2, 1)


def test_serve_refuses_an_sqlalchemy_its_scheduler_cannot_use(monkeypatch):
    from featurestore.errors import FeatureStoreError
    from flows.serve import _check_scheduler_dependencies

    monkeypatch.setattr("sqlalchemy.__version__", "2.1.9")
    with pytest.raises(FeatureStoreError, match=r"does not work with SQLAlchemy 2.1.9: no schedule would fire; install sqlalchemy<2.1"):
        _check_scheduler_dependencies()


@pytest.mark.xfail(sqlalchemy_2_1(), strict=True, reason="Prefect 3.8.8's scheduler cannot insert runs under SQLAlchemy 2.1 (serve refuses it): pin sqlalchemy<2.1")
def test_a_scheduled_refresh_fires_by_itself_and_its_new_rows_appear(tmp_path, sms_file):
    """`featurestore serve` in a subprocess, a 2-second interval, and a poll of the store.

    Not on the session's test server: prefect_test_harness starts Prefect's ephemeral server,
    which runs without its scheduler service (create_app with PREFECT__SERVER_EPHEMERAL starts
    only the services marked run_in_ephemeral; schedule_deployments is not), so no scheduled
    run would ever be created there. `serve` starts its own local server when PREFECT_API_URL
    is unset, which is what this test exercises.
    """
    import psutil

    config = project(tmp_path, sms_file, 40, index=False, heads=False, schedule={"interval": 2})
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_UI_ENABLED="false", PREFECT_RUNNER_POLL_FREQUENCY="1",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", HF_HUB_OFFLINE="1")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from flows.cli.main import main; main()", "serve", "--config", str(config),
                                 "--limit", "1"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    store = Store(tmp_path / "store")
    rows = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            rows = len(store.resolve_table("sms").latest()) if (store.path / "views" / "sms").is_dir() and store.tables("sms") else 0
            if rows == 40 or b"Can't evaluate bulk DML" in log.read_bytes():  # the scheduler crashed: no run will come
                break
            time.sleep(1)
        children = psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert rows == 40, f"no scheduled run wrote the rows; serve said:\n{log.read_text()[-3000:]}"
    _gone, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, f"left running after serve stopped: {[p.pid for p in alive]}"


def test_refresh_of_a_project_whose_store_is_a_bucket(prefect_server, s3_store, tmp_path, sms_file, word2vec):
    """The project file names an s3:// store: tables go to the bucket, the index and the head to
    the work folder, and the second refresh updates the index from the rows committed since."""
    from flows.refresh import run_refresh

    config = project(tmp_path, sms_file)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**data, "store": s3_store}), encoding="utf-8")
    first = run_refresh(config, runner="inline").to_dict()["views"][0]
    enc, head = first["encoders"][0], first["heads"][0]
    assert (enc["encoded"], enc["index"]["status"], head["status"], head["version"]) == (60, "built", "retrained", 1)
    sms_file(70)
    second = run_refresh(config, runner="inline").to_dict()["views"][0]
    enc, head = second["encoders"][0], second["heads"][0]
    assert (enc["encoded"], enc["skipped"], enc["index"]["status"], enc["index"]["rows"]) == (10, 60, "updated", 70)
    assert (head["status"], head["version"]) == ("retrained", 2)
    work = Store(s3_store).path
    assert (work / "models" / "spam" / "2" / "manifest.json").is_file() and not (tmp_path / "store").exists()
    keys = bucket_keys(s3_store)
    assert any(k.endswith("/models/spam/2/manifest.json") for k in keys) and any(k.endswith("/CURRENT") and "/indexes/sms/" in k for k in keys)


def test_a_failing_view_is_reported_and_the_other_views_still_refresh(tmp_path, sms_file, word2vec, cli):
    """An unattended run: one view's source stops parsing; the other view is refreshed anyway, the
    command exits 2 naming the failed view and why, and the failed view's table is untouched."""
    config = project(tmp_path, sms_file, 30, index=False, heads=False)
    data = yaml.safe_load(config.read_text())
    notes = tmp_path / "notes.csv"
    notes.write_text("id,text\n1,first note\n2,second note\n", encoding="utf-8")
    data["sources"].append({"name": "notes", "path": "notes.csv", "id_col": "id"})
    data["views"].insert(0, {"name": "notes", "source": "notes", "encoders": ["word2vec"]})
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    assert cli("refresh", "--config", config, "--runner", "inline")[0] == 0

    notes.write_text("id,body\n1,first note\n3,third note\n", encoding="utf-8")  # the text column was renamed
    sms_file(40)
    store = tmp_path / "store"
    notes_before = {k: v for k, v in snapshot(store).items() if k.startswith("views/notes/")}
    code, out, err = cli("refresh", "--config", config, "--runner", "inline", "--json")
    *progress, error = err.splitlines()  # progress on stderr (one step per view here), then the one-line error
    assert code == 2 and "Traceback" not in err and progress[0] == "featurestore: refresh featurestore.yaml: 1/2 steps"
    assert progress[-1] == "featurestore: refresh featurestore.yaml: 2/2 steps", err
    assert error.startswith(f"featurestore: error: refresh of {config} failed for 1 of 2 view(s): notes: ") and "'text'" in error
    import json

    summary = json.loads(out)
    assert summary["failed"] == ["notes"] and summary["changed"]
    assert summary["views"][1]["encoders"][0]["encoded"] == 10
    assert {k: v for k, v in snapshot(store).items() if k.startswith("views/notes/")} == notes_before


def test_a_scheduled_refresh_with_a_failing_view_publishes_its_artifact_and_ends_failed(prefect_server, tmp_path, sms_file, word2vec):
    from featurestore.errors import RefreshFailed
    from flows.refresh import refresh_flow

    config = project(tmp_path, sms_file, 20, index=False, heads=False)
    data = yaml.safe_load(config.read_text())
    (tmp_path / "notes.csv").write_text("id,body\n1,a note without the text column\n", encoding="utf-8")
    data["sources"].append({"name": "notes", "path": "notes.csv", "id_col": "id"})
    data["views"].append({"name": "notes", "source": "notes", "encoders": ["word2vec"]})
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(RefreshFailed, match="failed for 1 of 2 view"):
        refresh_flow(str(config))
    markdown = read_artifact("refresh-sms-notes")
    assert "### notes\n**FAILED**: " in markdown and "| 20 | 20 | 0 | 0 | 0 | None -> 0 |" in markdown
    assert len(Store(tmp_path / "store").resolve_table("sms").latest()) == 20
