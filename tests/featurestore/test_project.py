"""The project file: a valid one loads with paths resolved; each mistake is one line naming the file and key."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from featurestore.errors import ProjectError
from featurestore.project import load_project
from tests.conftest import W2V, need, snapshot

BASE: dict[str, Any] = {
    "store": "store",
    "sources": [{"name": "sms", "path": "sms.txt", "format": "sms", "id_col": "@line", "keep": ["label"]}],
    "views": [{"name": "sms", "source": "sms", "encoders": ["word2vec"], "index": True, "schedule": {"interval": 5}}],
    "heads": [{"name": "spam", "task": "spam", "view": "sms", "options": {"n_splits": 2}}],
}


@pytest.fixture
def write(tmp_path: Path) -> Callable[[Callable[[dict], None]], Path]:
    """Write BASE changed by ``edit`` to tmp_path/featurestore.yaml (beside an existing sms.txt)."""
    (tmp_path / "sms.txt").write_text("ham\thello\n", encoding="utf-8")

    def make(edit: Callable[[dict], None] = lambda d: None) -> Path:
        data = copy.deepcopy(BASE)
        edit(data)
        path = tmp_path / "featurestore.yaml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return path

    return make


def test_a_valid_file_loads_with_paths_resolved_against_its_folder(write, tmp_path):
    project = load_project(write())
    assert project.store_root == str(tmp_path / "store")
    assert project.sources[0].path == tmp_path / "sms.txt"
    view = project.views[0]
    assert (view.encoders, view.schedule.interval, view.index.target_recall) == (("word2vec",), 5, 0.95)
    assert project.head_encoder(project.heads[0]) == "word2vec" and project.drift.alert_level == 0.1


def test_a_heads_file_options_resolve_against_the_projects_folder(write, tmp_path):
    def ranking(d: dict) -> None:
        d["heads"][0].update(task="ranking", options={"queries": "cran.qry", "qrels": "/abs/cranqrel", "n_splits": 2})

    options = load_project(write(ranking)).heads[0].options
    assert options == {"queries": str(tmp_path / "cran.qry"), "qrels": "/abs/cranqrel", "n_splits": 2}


def test_an_image_views_tta_reaches_the_encoder_options_materialize_would_pass(write, tmp_path):
    """refresh builds a view's encoder keywords where `materialize --tta` does: the same table."""
    from flows.refresh import _materialize_options
    from flows.runner import encoder_options

    (tmp_path / "photos").mkdir()
    project = load_project(write(lambda d: (d["sources"].append({"name": "photos", "path": "photos"}),
                                            d["views"].append({"name": "bees", "source": "photos", "encoders": ["efficientnet-lite0"], "tta": "flip5crop"}))))
    options = _materialize_options(project.views[1], "efficientnet-lite0")["encoder_options"]
    assert options == encoder_options("efficientnet-lite0", tta="flip5crop") and options["tta"] == "flip5crop"


def test_the_library_side_does_not_import_prefect():
    import subprocess
    import sys

    code = "import sys, featurestore.project, featurestore.locks; print('prefect' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["views"][0].update(encoders=["minilmx"]), "views[0].encoders: unknown encoder 'minilmx'"),
        (lambda d: d["views"][0].update(schedul={"interval": 5}), "views[0]: unknown key 'schedul'"),
        (lambda d: d["views"][0].update(index={"target_recal": 0.9}), "views[0].index: unknown key 'target_recal'"),
        (lambda d: d.update(extra=1), "top level: unknown key 'extra'"),
        (lambda d: d["views"][0].update(schedule={"interval": 5, "cron": "* * * * *"}), "views[0].schedule: give exactly one of interval"),
        (lambda d: d["views"][0].update(schedule={"cron": "every minute"}), "views[0].schedule.cron: cron 'every minute' is not a cron"),
        (lambda d: d["views"][0].update(schedule={"interval": 0}), "views[0].schedule.interval: Input should be greater than 0"),
        (lambda d: d["sources"][0].update(path="missing.txt"), "sources[0].path: file not found: "),
        (lambda d: d["views"][0].update(source="smsx"), "views[0].source: unknown source 'smsx'; sources: sms"),
        (lambda d: d["heads"][0].update(encoder="minilm"), "heads[0].encoder: 'minilm' is not an encoder of view 'sms'"),
        (lambda d: d["views"].append(dict(d["views"][0])), "views[1].name: 'sms' is used twice"),
        (lambda d: d.pop("views"), "views: Field required"),
        (lambda d: d["views"][0].update(schedule={"cron": "61 * * * *"}), "views[0].schedule.cron: cron '61 * * * *' is not a cron"),
        (lambda d: d["views"][0].update(index={"memory_budget": "lots"}), "views[0].index.memory_budget: memory budget must look like 2GB"),
        (lambda d: d["views"][0].update(long_text="chunks"), "views[0].long_text: Input should be 'truncate' or 'windows'"),
        (lambda d: d["views"][0].update(tta="rotate"), "views[0].tta: Input should be 'none', 'flip' or 'flip5crop'"),
    ],
)
def test_each_mistake_names_the_file_and_the_key(write, edit, message):
    path = write(edit)
    with pytest.raises(ProjectError) as info:
        load_project(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["views"][0].update(layers="last4"), "views[0]: encoder 'word2vec' does not take layers; leave it out or use an encoder that does"),
        (lambda d: d["views"][0].update(tta="flip"), "views[0]: encoder 'word2vec' does not take tta; leave it out or use an encoder that does"),
        (lambda d: d["views"][0].update(encoders=["minilm"], layers="last4"),
         "views[0]: layers='last4' only apply to granularity='token'; pass granularity='token' or leave them out"),
        (lambda d: d["views"][0].update(encoders=["minilm"], granularity="token", long_text="windows"),
         "views[0]: long_text applies to granularity='sentence'; token level always reads every word in windows"),
    ],
)
def test_a_views_encoder_options_are_checked_by_the_encoder_before_anything_runs(write, edit, message, cli):
    """The project file's types allow each value; which options an encoder takes, at which
    granularity, its encoder says (as for `materialize`), when refresh loads the file."""
    need(W2V)
    path = write(edit)
    before = snapshot(path.parent)
    code, out, err = cli("refresh", "--config", path, "--runner", "inline")
    assert (code, out, err) == (2, "", f"featurestore: error: {path}: {message}\n")
    assert snapshot(path.parent) == before


def test_a_file_that_is_not_yaml_names_the_line(tmp_path):
    path = tmp_path / "featurestore.yaml"
    path.write_text("views:\n  - name: [sms\n", encoding="utf-8")
    with pytest.raises(ProjectError, match=r"featurestore.yaml: line \d+: not valid YAML"):
        load_project(path)


def test_the_cli_prints_one_line_and_exits_2(write, cli):
    path = write(lambda d: d["views"][0].update(encoders=["minilmx"]))
    code, out, err = cli("refresh", "--config", path)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [err.strip()] and f"{path}: views[0].encoders: unknown encoder 'minilmx'" in err


def test_an_unknown_head_option_is_a_config_error(write, cli):
    path = write(lambda d: d["heads"][0]["options"].update(queries="q.jsonl"))
    code, _, err = cli("refresh", "--config", path)
    assert code == 2 and f"{path}: heads[0]: task 'spam' does not take --queries" in err


def test_init_writes_an_example_that_validates_once_its_source_exists(tmp_path, cli):
    path = tmp_path / "featurestore.yaml"
    code, out, err = cli("init", "--config", path)
    assert code == 0, err
    with pytest.raises(ProjectError, match=r"sources\[0\]\.path: file not found"):
        load_project(path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "SMSSpamCollection").write_text("ham\thello\n", encoding="utf-8")
    project = load_project(path)
    assert [v.name for v in project.views] == ["sms"] and project.heads[0].task == "spam"
    before = path.read_text()
    assert cli("init", "--config", path)[:1] == (2,) and path.read_text() == before  # never over an existing file
    code, _, err = cli("init", "--config", tmp_path / "nowhere" / "featurestore.yaml")
    assert code == 2 and err.startswith("featurestore: error: cannot write ") and len(err.strip().splitlines()) == 1
