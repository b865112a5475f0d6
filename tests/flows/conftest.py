"""The flow tests' fixtures: a real Prefect server (temporary database, started once per session),
a small store built through the command line, a folder of photos, a project file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from flows.prefect_env import apply_defaults
from tests.conftest import DATA, need, run_main

IMAGES = DATA / "images" / "hymenoptera_train"


@pytest.fixture(scope="session")
def prefect_server():
    apply_defaults()
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


def read_artifact(key: str) -> str:
    """The newest artifact with this key, read over the server's REST API.

    (Prefect 3.8's client sends null filters that this server version rejects, so the body is
    spelled out in full.)
    """
    from prefect.client.orchestration import get_client

    body = {"artifacts": {"key": {"any_": [key]}}, "limit": 1, "offset": 0, "sort": "CREATED_DESC"}
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json=body)
    artifacts = response.json()
    assert artifacts, f"no artifact {key}"
    return artifacts[0]["data"]


@pytest.fixture(scope="module")
def built(tmp_path_factory, sms_lines, word2vec):
    """The store, its source, and the (code, stdout, stderr) of each costly command that built it."""
    root = tmp_path_factory.mktemp("json")
    source = root / "SMSSpamCollection"
    store = root / "store"
    common = ["--view", "sms", "--encoder", "word2vec", "--store", store, "--id-col", "@line", "--keep", "label,text", "--runner", "inline"]
    outputs = {}
    source.write_text("\n".join(sms_lines[:80]) + "\n", encoding="utf-8")
    outputs["materialize"] = run_main("materialize", source, *common, "--json")
    source.write_text("\n".join(sms_lines[:100]) + "\n", encoding="utf-8")
    outputs["materialize_quiet"] = run_main("materialize", source, *common, "--json", "--quiet")
    outputs["index build"] = run_main("index", "build", "--view", "sms", "--store", store, "--json")
    outputs["train"] = run_main("train", "spam", "--view", "sms", "--store", store, "--head", "logistic", "--folds", "3", "--runner", "inline", "--json")
    outputs["report"] = run_main("report", "--out", root / "report.html", "--sample", "50", "--store", store, "--json")
    outputs["index build quiet"] = run_main("index", "build", "--view", "sms", "--store", store, "--json", "--quiet")
    for name, (code, _, err) in outputs.items():
        assert code == 0, (name, err)
    return {"store": store, "source": source, "root": root, "outputs": outputs}


@pytest.fixture
def image_folder(tmp_path):
    need(IMAGES)
    root = tmp_path / "imgs"
    for label in ("ants", "bees"):
        (root / label).mkdir(parents=True)
        for src in sorted((IMAGES / label).glob("*.jpg"))[:3]:
            shutil.copy(src, root / label / src.name)
    return root


def project(tmp_path: Path, sms_file, n: int = 60, *, index: bool = True, heads: bool = True, schedule: dict | None = None) -> Path:
    """A project of the first ``n`` SMS messages, word2vec, an index and a spam head (2 folds: few rows)."""
    sms_file(n)
    view = {"name": "sms", "source": "sms", "encoders": ["word2vec"], "index": index}
    if schedule:
        view["schedule"] = schedule
    data = {
        "store": "store",
        "sources": [{"name": "sms", "path": "SMSSpamCollection", "format": "sms", "id_col": "@line", "keep": ["label"]}],
        "views": [view],
        "heads": [{"name": "spam", "task": "spam", "view": "sms", "options": {"n_splits": 2}}] if heads else [],
    }
    path = tmp_path / "featurestore.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path
