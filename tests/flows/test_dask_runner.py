"""The Dask runner: shard tasks on worker processes give exactly the local runner's table."""

from __future__ import annotations

import socket
import sys

import numpy as np
import pytest

from featurestore.sources import TextSource
from featurestore.store import Store
from tests.conftest import S3_ENV, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dask_client():
    """A 2-worker LocalCluster (processes, 1 thread each), as a user's own cluster would be."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("prefect_dask")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


def count_word2vec_loads() -> None:
    """Run on each worker: count how often the word vectors are read from disk in that process."""
    from featurestore.encoders import word2vec

    original = word2vec.Word2VecEncoder._load

    def counted(self):
        word2vec.loads_in_this_process = getattr(word2vec, "loads_in_this_process", 0) + 1
        return original(self)

    word2vec.Word2VecEncoder._load = counted


def word2vec_loads() -> int:
    from featurestore.encoders import word2vec

    return getattr(word2vec, "loads_in_this_process", 0)


def latest_sorted(store) -> tuple[list[str], bytes, list[str | None]]:
    frame = Store(store).resolve_table("sms").latest(["label"])
    order = np.argsort(frame.ids)
    return list(frame.ids[order]), np.ascontiguousarray(frame.vectors[order]).tobytes(), [frame.columns.column("label").to_pylist()[i] for i in order]


def test_dask_workers_write_exactly_the_local_runners_rows(prefect_server, tmp_path, sms_file, word2vec, dask_client):
    from flows.dask_runner import DaskOptions
    from flows.runner import run

    dask_client.run(count_word2vec_loads)
    source = TextSource(str(sms_file(300)), format="sms", id_col="@line", keep=("label",))
    local = run(source, "sms", "word2vec", store=str(tmp_path / "local"), shard_size=40)
    on_dask = run(source, "sms", "word2vec", store=str(tmp_path / "dask"), runner="dask",
                  dask=DaskOptions(address=dask_client.scheduler.address), shard_size=40)

    assert on_dask.shards == local.shards == 8 and on_dask.encoded == local.encoded == 300
    assert latest_sorted(tmp_path / "dask") == latest_sorted(tmp_path / "local")
    history, _ = Store(tmp_path / "dask").resolve_table("sms").scan(["entity_id"])
    assert history.num_rows == 300, "a concurrent commit lost or duplicated rows"
    loads = dask_client.run(word2vec_loads)
    assert sorted(loads.values()) == [1, 1], f"each worker should load the vectors once and take shards: {loads}"


def set_environment(values: dict[str, str | None]) -> None:
    """Run on each worker: what a user's cluster has in its environment (credentials, endpoint)."""
    import os

    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def test_dask_workers_commit_to_a_bucket_exactly_the_local_runners_rows(prefect_server, s3_store, tmp_path, sms_file, word2vec, dask_client):
    """Shards committed from two worker processes at once to a table on (local) S3: conditional
    writes on the object store stand in for the file system's atomic rename."""
    import os

    from flows.dask_runner import DaskOptions
    from flows.runner import run

    env = {name: os.environ[name] for name in (*S3_ENV, "AWS_ENDPOINT_URL", "FEATURESTORE_WORK_DIR")}
    dask_client.run(set_environment, env)
    try:
        source = TextSource(str(sms_file(300)), format="sms", id_col="@line", keep=("label",))
        local = run(source, "sms", "word2vec", store=str(tmp_path / "local"), shard_size=40)
        on_dask = run(source, "sms", "word2vec", store=s3_store, runner="dask",
                      dask=DaskOptions(address=dask_client.scheduler.address), shard_size=40)
    finally:
        dask_client.run(set_environment, dict.fromkeys(env))
    assert on_dask.shards == local.shards == 8 and on_dask.encoded == 300
    assert latest_sorted(s3_store) == latest_sorted(tmp_path / "local")
    history, version = Store(s3_store).resolve_table("sms").scan(["entity_id"])
    assert history.num_rows == 300 and version == local.table_version, "a concurrent commit lost or duplicated rows"


def test_a_commit_conflict_is_retried():
    """Two shards that create a new table at once: the loser's CommitFailedError is retried, then appends."""
    from deltalake.exceptions import CommitFailedError
    from prefect.states import Failed

    from flows.materialize import transient

    assert transient(None, None, Failed(data=CommitFailedError("Metadata changed since last commit.")))
    assert not transient(None, None, Failed(data=ValueError("a bug")))


def test_an_unreachable_scheduler_is_a_one_line_error_and_the_store_is_unchanged(tmp_path, sms_file, word2vec, cli):
    path = sms_file(30)
    store = tmp_path / "store"
    common = [path, "--view", "sms", "--encoder", "word2vec", "--store", store, "--id-col", "@line"]
    assert cli("materialize", *common, "--runner", "inline")[0] == 0
    before = snapshot(store)
    sms_file(60)  # 30 more rows to write
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    code, _, err = cli("materialize", *common, "--runner", "dask", "--address", f"tcp://127.0.0.1:{port}")
    assert code == 2 and err.count("\n") == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err
    assert snapshot(store) == before


def test_address_without_the_dask_runner_is_refused(tmp_path, sms_file, cli):
    code, _, err = cli("materialize", sms_file(5), "--view", "sms", "--encoder", "word2vec", "--store", tmp_path / "s",
                       "--address", "tcp://127.0.0.1:8786")
    assert code == 2 and "need --runner dask" in err and not (tmp_path / "s").exists()


def test_the_dask_runner_without_prefect_dask_names_the_extra(tmp_path, sms_file, cli, monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_dask", None)  # import prefect_dask now raises ImportError
    code, _, err = cli("materialize", sms_file(5), "--view", "sms", "--encoder", "word2vec", "--store", tmp_path / "s",
                       "--runner", "dask")
    assert code == 2 and "prefect_dask is not installed" in err and "featurestore[dask]" in err
    assert not (tmp_path / "s").exists()
