"""train / predict / evaluate / models on the command line, and the training flow with its artifact."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import assert_user_error, snapshot


@pytest.fixture(scope="module")
def spam_store(tmp_path_factory, sms_lines, word2vec):
    """A store with view 'sms' (word2vec, 600 messages, label kept) and a spam head 'spam' v1."""
    from featurestore import TextSource, materialize
    from flows.train import train_and_register

    root = tmp_path_factory.mktemp("train-store")
    path = root / "SMSSpamCollection"
    path.write_text("\n".join(sms_lines[:600]) + "\n", encoding="utf-8")
    materialize(TextSource(str(path), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=str(root / "store"))
    train_and_register("spam", "sms", store=str(root / "store"), name="spam", options={"n_splits": 3})
    return root / "store"


def test_train_json_registers_a_new_version(spam_store, cli):
    code, out, err = cli("train", "spam", "--view", "sms", "--store", spam_store, "--folds", "3", "--runner", "inline", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["name"], summary["task"], summary["rows"]) == ("spam", "spam", 600)
    assert summary["version"] >= 2 and 0.5 < summary["metrics"]["f1"] <= 1.0
    assert "baseline_f1" in summary["metrics"]  # the TF-IDF baseline read the view's source from its run record
    # progress on stderr, stdout the JSON alone: 3 folds of each of 3 candidate heads and 2 TF-IDF baselines, then the final fit
    assert "featurestore: train spam: 1/16 steps\n" in err and err.endswith("featurestore: train spam: 16/16 steps\n"), err
    code, out, _ = cli("models", "--store", spam_store, "--json")
    listed = {(m["name"], m["version"]) for m in json.loads(out)}
    assert code == 0 and {("spam", 1), ("spam", summary["version"])} <= listed


def test_train_quiet_prints_no_progress_and_the_table_line_still_shows(spam_store, cli):
    code, out, err = cli("train", "spam", "--view", "sms", "--store", spam_store, "--folds", "2", "--head", "logistic",
                         "--name", "spam-quiet", "--runner", "inline", "--quiet")
    assert code == 0 and err == "", err
    assert out.startswith("spam-quiet v1 (spam, 600 rows): f1 ")
    code, out, err = cli("train", "spam", "--view", "sms", "--store", spam_store, "--folds", "2", "--head", "logistic",
                         "--name", "spam-quiet", "--runner", "inline")
    lines = err.splitlines()  # the first step, one line every few seconds at most (stderr is not a terminal), the last
    assert code == 0 and lines[0] == "featurestore: train spam: 1/7 steps" and lines[-1] == "featurestore: train spam: 7/7 steps", err
    assert all(re.fullmatch(r"featurestore: train spam: [1-7]/7 steps", line) for line in lines), err


def test_predict_texts_and_a_file(spam_store, cli, tmp_path):
    code, out, err = cli("predict", "spam:1", "WINNER!! Claim your free prize now, call 09061701461", "see you at lunch?",
                         "--store", spam_store, "--json")
    assert code == 0, err
    first, second = json.loads(out)
    assert (first["id"], first["label"], second["label"]) == ("0", "spam", "ham")
    assert 0.5 <= first["score"] <= 1.0
    inputs = tmp_path / "in.csv"
    inputs.write_text("msg_id,body\na,free entry in 2 a wkly comp to win cash\nb,ok thanks\n", encoding="utf-8")
    code, out, err = cli("predict", "spam", "--input", inputs, "--id-col", "msg_id", "--text-col", "body", "--store", spam_store, "--json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)] == ["a", "b"]


def test_evaluate_trains_again_from_the_manifest_identically(spam_store, cli):
    code, out, err = cli("evaluate", "spam:1", "--store", spam_store, "--json")
    assert code == 0, err
    check = json.loads(out)
    assert check["identical_metrics"] and check["identical_head"], check
    assert check["metrics"] == check["recorded_metrics"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("train", "sentiment", "--view", "sms"), "unknown task 'sentiment'; choose one of: spam, image"),
        (("train", "spam", "--view", "sms", "--queries", "q.txt"), "task 'spam' does not take --queries"),
        (("train", "spam", "--view", "sms", "--labels", "verdict"), "verdict"),
        (("train", "spam", "--view", "nope"), "nope"),
        (("train", "spam", "--view", "sms", "--runner", "dask"), "runner must be one of: local, inline"),
        (("train", "ranking", "--view", "sms", "--unfreeze-last", "1"), "--unfreeze-last applies to tasks image, classify, spam"),
        (("train", "spam", "--view", "sms", "--option", "arch"), "--option 'arch': expected KEY=VALUE"),
        (("train", "spam", "--view", "sms", "--unfreeze-last", "1", "--queries", "q"), "does not take --queries"),
        (("predict", "nothing", "hello"), "nothing"),
        (("predict", "spam:x", "hello"), "the version after ':' must be a number"),
        (("predict", "spam"), "give the inputs as arguments or with --input FILE"),
        (("predict", "spam", "--input", "missing.csv"), "input file not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_the_store_is_unchanged(spam_store, cli, args, message):
    before = snapshot(spam_store)
    assert_user_error(cli(*args, "--store", spam_store, *(["--runner", "inline"] if args[0] == "train" and "--runner" not in args else [])), message)
    assert snapshot(spam_store) == before


def test_predict_refuses_a_tampered_model(spam_store, cli, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(spam_store, copy)
    head = copy / "models" / "spam" / "1" / "head.skops"
    head.write_bytes(head.read_bytes()[:-1] + bytes([head.read_bytes()[-1] ^ 1]))
    assert_user_error(cli("predict", "spam:1", "hello", "--store", copy), "modified after it was saved")


@pytest.mark.slow
def test_train_flow_publishes_the_metrics_artifact(prefect_server, spam_store, cli):
    from tests.flows.conftest import read_artifact

    code, out, err = cli("train", "spam", "--view", "sms", "--name", "spam-flow", "--folds", "3", "--store", spam_store, "--json")
    assert code == 0, err
    summary = json.loads(out)
    markdown = read_artifact("train-spam-flow")
    assert f"spam-flow v{summary['version']}" in markdown and "| f1 |" in markdown
