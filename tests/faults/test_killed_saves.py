"""kill -9 of real ``featurestore train`` and ``index build`` processes at the point where they have
written their temporary files and not yet committed them; the next save clears what they left,
and never what a live writer holds."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from featurestore.index import search
from featurestore.materialization import materialize
from featurestore.sources import TextSource
from models import spam
from models.registry import load_model, save_model
from tests.faults.runs import environment, killed_at, start


@pytest.fixture
def sms_store(tmp_path, sms_file, word2vec) -> Path:
    store = tmp_path / "store"
    materialize(TextSource(str(sms_file(200)), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=store)
    return store


def killed(cmd: list[str], tmp_path: Path) -> None:
    """Run ``cmd`` (a :func:`killed_at` command) and check that it died of the SIGKILL, not of an error."""
    run = start(cmd, environment(tmp_path / "tmp", tmp_path / "prefect-home"), tmp_path / "killed")
    try:
        code = run.wait()
        assert code == -signal.SIGKILL, f"exit {code}: {run.output()[1][-2000:]}"
    finally:
        run.kill()


TRAIN = ("train", "spam", "--view", "sms", "--runner", "inline", "--folds", "2", "--json")


@pytest.mark.slow
def test_a_train_killed_before_its_version_is_renamed_into_place_is_cleared_by_the_next_save(sms_store, tmp_path, cli):
    killed(killed_at(".tmp-*", *TRAIN, "--store", sms_store), tmp_path)
    models = sms_store / "models" / "spam"
    [dead] = [p.name for p in models.iterdir()]  # the whole version, written and never renamed
    assert dead.startswith(".tmp-") and (models / dead / "manifest.json").is_file()

    code, out, err = cli(*TRAIN, "--store", sms_store)
    assert code == 0, err
    assert json.loads(out)["version"] == 1
    assert [p.name for p in models.iterdir()] == ["1"]
    assert load_model("spam", store=sms_store).version == 1


HOLDER = """
import fcntl, os, sys, time
folder = sys.argv[1]
fd = os.open(folder, os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_SH)  # what save_model holds while its .tmp-* exists
os.mkdir(os.path.join(folder, ".tmp-live"))
print("writing", flush=True)
time.sleep(600)
"""


def test_a_save_leaves_a_live_writers_temporary_folder_alone_and_clears_it_once_the_writer_is_dead(sms_store):
    result = spam.train("sms", n_splits=2, store=sms_store)
    models = sms_store / "models" / "spam"
    models.mkdir(parents=True)
    writer = subprocess.Popen([sys.executable, "-c", HOLDER, str(models)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert save_model("spam", result, store=sms_store).version == 1
        assert (models / ".tmp-live").is_dir()  # another process writes it: not a leftover
        writer.kill()
        writer.wait(timeout=30)
        assert save_model("spam", result, store=sms_store).version == 2
        assert sorted(p.name for p in models.iterdir()) == ["1", "2"]
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdout.close()


def test_an_index_build_killed_before_its_commit_leaves_the_index_in_force_and_the_next_build_clears_its_files(sms_store, tmp_path, cli):
    code, out, err = cli("index", "build", "--view", "sms", "--store", sms_store, "--json")
    assert code == 0, err
    [folder] = (sms_store / "indexes" / "sms").iterdir()
    first = set(json.loads((folder / "index.json").read_text())["files"].values())
    assert {p.name for p in folder.iterdir()} == {"index.json", *first}
    [hits] = search("sms", store=sms_store, ids=["3"], k=5)

    # killed after the new index file is in place, while its id map is a temporary file, before index.json names them
    killed(killed_at(".ids-*.parquet.tmp", "index", "build", "--view", "sms", "--store", sms_store), tmp_path)
    dead = {p.name for p in folder.iterdir()} - {"index.json", *first}
    assert len(dead) == 2 and any(n.startswith("index-") for n in dead) and any(n.endswith(".parquet.tmp") for n in dead)
    assert set(json.loads((folder / "index.json").read_text())["files"].values()) == first
    assert search("sms", store=sms_store, ids=["3"], k=5) == [hits]  # the committed index still serves

    code, out, err = cli("index", "build", "--view", "sms", "--store", sms_store, "--json")
    assert code == 0, err
    second = set(json.loads((folder / "index.json").read_text())["files"].values())
    assert {p.name for p in folder.iterdir()} == {"index.json", *second, *first}  # the first set stays for its readers
    assert search("sms", store=sms_store, ids=["3"], k=5) == [hits]
