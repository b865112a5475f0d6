"""Every bad argument of every command is one line, exit 2, before any flow: Prefect is never imported.

All the cases run in one fresh `featurestore` process (``main`` called once per case), which
reports after each case whether ``prefect`` is in ``sys.modules``: a flow, a Prefect server or a
Prefect client cannot start without importing it, so this detects any start, however reached.
The cases run in an order where nothing before them imported Prefect (no case succeeds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import snapshot

ROOT = Path(__file__).resolve().parents[2]

RUN_CASES = """
import contextlib, io, json, sys
from flows.cli.main import main
results = []
for args in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    results.append({"args": args, "code": code, "out": out.getvalue(), "err": err.getvalue(), "prefect": "prefect" in sys.modules})
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, sms_lines, word2vec):
    """View 'sms' (word2vec, 40 rows, label kept) and view 'tok' (token level), with an index, written without Prefect."""
    from flows.cli.main import main

    folder = tmp_path_factory.mktemp("user-errors")
    sms = folder / "SMSSpamCollection"
    sms.write_text("\n".join(sms_lines[:40]) + "\n", encoding="utf-8")
    root = folder / "store"
    base = ["--store", str(root), "--id-col", "@line", "--runner", "inline"]
    assert main(["materialize", str(sms), "--view", "sms", "--encoder", "word2vec", "--keep", "label", *base]) == 0
    assert main(["materialize", str(sms), "--view", "tok", "--encoder", "word2vec", "--granularity", "token", *base]) == 0
    assert main(["index", "build", "--view", "sms", "--store", str(root)]) == 0
    for name, path in (("project", sms), ("gone", folder / "gone.txt")):
        (folder / f"{name}.yaml").write_text(
            f"store: {root}\nsources:\n  - {{name: sms, path: {path}, format: sms, id_col: '@line', keep: [label]}}\n"
            "views:\n  - {name: sms, source: sms, encoders: [word2vec]}\n",
            encoding="utf-8",
        )
    (folder / "broken.yaml").write_text("views: [unclosed\n", encoding="utf-8")
    (folder / "a-file").write_text("")
    (folder / "export").mkdir()
    (folder / "export" / "kept.txt").write_text("an earlier export")
    return folder


def cases(folder: Path) -> list[tuple[list[str], str]]:
    """(arguments, a part of the message) for the bad-argument paths of each command."""
    src, store, missing = str(folder / "SMSSpamCollection"), ["--store", str(folder / "store")], str(folder / "nosuch.csv")
    mat = ["materialize", src, "--id-col", "@line", *store]
    train = ["train", "spam", "--view", "sms", *store]
    return [
        # materialize (default runner: the flow path)
        ([*mat[:1], missing, "--view", "sms", "--encoder", "word2vec", *store], "nosuch.csv"),
        ([*mat, "--view", "sms", "--encoder", "nosuch"], "nosuch"),
        ([*mat, "--view", "sms", "--encoder", "word2vec", "--granularity", "word"], "--granularity must be"),
        ([*mat, "--view", "sms", "--encoder", "word2vec", "--on-duplicate", "first"], "first"),
        ([*mat, "--view", "sms", "--encoder", "word2vec", "--runner", "celery"], "runner must be one of"),
        ([*mat, "--view", "sms", "--encoder", "word2vec", "--keep", "nosuch"], "nosuch"),
        ([*mat, "--view", "../up", "--encoder", "word2vec"], "../up"),
        ([*mat, "--view", "sms", "--encoder", "word2vec", "--layers", "last4"], "--layers"),
        ([*mat, "--view", "sms", "--encoder", "word2vec", "--address", "tcp://127.0.0.1:9"], "--runner dask"),
        # index build / update
        (["index", "build", "--view", "nosuch", *store], "view 'nosuch' does not exist"),
        (["index", "build", "--view", "sms", "--index-type", "annoy", *store], "annoy"),
        (["index", "build", "--view", "sms", "--encoder", "minilm", *store], "no table for encoder 'minilm'"),
        (["index", "update", "--view", "nosuch", *store], "view 'nosuch' does not exist"),
        (["index", "update", "--view", "tok", *store], "tok"),
        # train
        (["train", "nosuch", "--view", "sms", *store], "unknown task 'nosuch'"),
        (["train", "spam", "--view", "nosuch", *store], "view 'nosuch' does not exist"),
        ([*train, "--encoder", "minilm"], "no table for encoder 'minilm'"),
        ([*train, "--labels", "nosuch"], "label column 'nosuch' is not a kept column"),
        ([*train, "--labels", missing], "labels file not found"),
        ([*train, "--split", "random"], "split must be"),
        ([*train, "--folds", "1"], "--folds"),
        ([*train, "--extra-encoder", "minilm"], "no table for encoder 'minilm'"),
        ([*train, "--queries", missing], "does not take --queries"),
        ([*train, "--option", "C"], "expected KEY=VALUE"),
        ([*train, "--runner", "dask"], "runner must be one of"),
        ([*train, "--name", "../up"], "../up"),
        (["train", "classify", "--view", "sms", "--head", "forest", *store], "--head must be one of: auto, logistic, mlp, logistic-cv, lexical, hybrid"),
        (["train", "image", "--view", "sms", "--option", "C=5", *store], "head 'logistic-cv' chooses C by inner cross-validation"),
        (["train", "ranking", "--view", "sms", "--queries", missing, "--qrels", missing, *store], "--queries file not found"),
        (["train", "ranking", "--view", "sms", "--queries", src, "--qrels", src, "--word2vec-view", "nosuch", *store],
         "view 'nosuch' does not exist"),
        (["train", "ner", "--view", "tok", "--eval-view", "nosuch", *store], "view 'nosuch' does not exist"),
        # refresh
        (["refresh", "--config", str(folder / "nosuch.yaml")], "nosuch.yaml"),
        (["refresh", "--config", str(folder / "broken.yaml")], "broken.yaml"),
        (["refresh", "--config", str(folder / "project.yaml"), "--view", "nosuch"], "nosuch"),
        (["refresh", "--config", str(folder / "project.yaml"), "--runner", "dask"], "runner must be one of"),
        (["refresh", "--config", str(folder / "gone.yaml")], "gone.txt"),
        # report
        (["report", "--out", str(folder / "a-file" / "report.html"), *store], "a-file"),
        (["report", "--sample", "0", "--out", str(folder / "r.html"), *store], "sample must be a positive int"),
        # export
        (["export", "--view", "nosuch", "--out", str(folder / "e1"), *store], "view 'nosuch' does not exist"),
        (["export", "--view", "sms", "--out", str(folder / "e2"), "--as-of", "yesterday", *store], "yesterday"),
        (["export", "--view", "sms", "--out", str(folder / "e3"), "--as-of", "99", *store], "99"),
        (["export", "--view", "sms", "--out", str(folder / "export"), *store], "--overwrite"),
        (["export", "--view", "sms", "--out", str(folder / "e4"), "--rows-per-file", "0", *store], "rows_per_file must be a positive int"),
    ]


def test_every_bad_argument_is_one_line_before_any_flow(store):
    walked = cases(store)
    before = snapshot(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", RUN_CASES, json.dumps([args for args, _ in walked])], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    wrong = []
    for (args, message), result in zip(walked, results):
        err = result["err"]
        ok = (result["code"] == 2 and err.startswith("featurestore: error: ") and err.count("\n") == 1 and message in err
              and "Traceback" not in err + result["out"] and not result["prefect"])
        if not ok:
            wrong.append(f"{' '.join(args)}\n  -> exit {result['code']}, prefect imported: {result['prefect']}, stderr: {err[-400:]!r}")
    assert not wrong, "\n".join(wrong)
    assert snapshot(store) == before  # no case wrote anything (store, project files, earlier export)


def test_an_error_only_the_data_shows_is_one_line_from_inside_the_flow(tmp_path, sms_lines, cli, word2vec):
    """Labels of one class pass every argument check and fail inside the training flow: the
    command still prints one line (Prefect's run loggers leave a user error to it)."""
    ham = tmp_path / "SMSSpamCollection"
    ham.write_text("\n".join([line for line in sms_lines if line.startswith("ham\t")][:30]) + "\n", encoding="utf-8")
    store = tmp_path / "store"
    code, _, err = cli("materialize", ham, "--view", "ham", "--encoder", "word2vec", "--store", store, "--id-col", "@line",
                       "--keep", "label", "--runner", "inline")
    assert code == 0, err
    before = snapshot(store)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", FEATURESTORE_WORK_DIR=str(tmp_path / "work"))
    proc = subprocess.run([sys.executable, "-m", "flows.cli.main", "train", "spam", "--view", "ham", "--store", str(store)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == "featurestore: error: labels 'label' have one class only ('ham', 30 rows); a classifier needs two or more\n"
    assert snapshot(store) == before
