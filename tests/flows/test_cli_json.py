"""Every command's ``--json`` is one JSON value on stdout; progress goes to stderr, ``--quiet`` silences it.

One small store (word2vec, 100 SMS in two versions, an index, a spam head) is built once per
module through the command line; the commands that cost seconds (materialize, index build,
train, report) are checked on the outputs of that build, the quick ones each in a test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def parsed(result: tuple[int, str, str]) -> object:
    code, out, err = result
    assert code == 0, err
    value = json.loads(out)  # the whole of stdout is one JSON value
    assert isinstance(value, (dict, list))
    return value


@pytest.mark.parametrize("name", ["materialize", "materialize_quiet", "index build", "index build quiet", "train", "report"])
def test_costly_commands_print_one_json_value(built, name):
    value = parsed(built["outputs"][name])
    assert isinstance(value, dict) and value


def test_progress_stays_on_stderr_with_json_and_quiet_silences_it(built):
    _, out, err = built["outputs"]["materialize"]
    assert json.loads(out)["encoded"] == 80
    assert "featurestore: materialize sms: 80/80 rows" in err  # stderr is not a terminal here: progress as lines
    _, out, err = built["outputs"]["materialize_quiet"]
    assert json.loads(out)["encoded"] == 20 and err == ""
    _, out, err = built["outputs"]["index build"]
    assert json.loads(out)["rows"] == 100 and err.splitlines() == ["featurestore: index build sms: 100/100 rows"]
    _, out, err = built["outputs"]["index build quiet"]
    assert json.loads(out)["rows"] == 100 and err == ""


def quick_commands(built) -> dict[str, list[object]]:
    store, root = built["store"], built["root"]
    labelled = root / "labelled.csv"
    if not labelled.exists():
        labelled.write_text("text,label\nWINNER!! claim your free prize now call 09061701461,spam\nsee you at lunch?,ham\n"
                            "Free entry in 2 a wkly comp to win FA Cup final tkts,spam\nok thanks,ham\n", encoding="utf-8")
    project = root / "featurestore.yaml"
    project.write_text(yaml.safe_dump({
        "store": str(store),
        "sources": [{"name": "sms", "path": str(built["source"]), "format": "sms", "id_col": "@line", "keep": ["label", "text"]}],
        "views": [{"name": "sms", "source": "sms", "encoders": ["word2vec"]}],
    }), encoding="utf-8")
    return {
        "encoders": ["encoders"],
        "info": ["info", "--store", store],
        "info --drift": ["info", "--drift", "--store", store],
        "models": ["models", "--store", store],
        "search": ["search", "--view", "sms", "--text", "free prize", "-k", "3", "--store", store],
        "search --ids-only": ["search", "--view", "sms", "--id", "3", "-k", "3", "--ids-only", "--store", store],
        "index update": ["index", "update", "--view", "sms", "--store", store],
        "predict": ["predict", "spam", "WINNER!! claim your prize", "lunch at 1?", "--store", store],
        "evaluate": ["evaluate", "spam", "--input", labelled, "--store", store],
        "export": ["export", "--view", "sms", "--out", root / "export", "--overwrite", "--store", store],
        "drift": ["drift", "--view", "sms", "--store", store],
        "as-is": ["as-is", "zero-shot", "win a prize", "--view", "sms", "--label", "spam=you won a prize", "--label", "ham=see you later", "--store", store],
        "refresh": ["refresh", "--config", project, "--runner", "inline"],
        "runs": ["runs", "--store", store],
        "compact": ["compact", "--view", "sms", "--store", store],
        "init": ["init", "--config", root / "new" / "featurestore.yaml"],
    }


QUICK = ["encoders", "info", "info --drift", "models", "search", "search --ids-only", "index update", "predict", "evaluate",
         "export", "drift", "as-is", "refresh", "runs", "compact", "init"]


@pytest.mark.parametrize("name", QUICK)
def test_quick_commands_print_one_json_value(built, cli, name):
    args = quick_commands(built)[name]
    if name == "init":
        Path(args[-1]).parent.mkdir(exist_ok=True)
        Path(args[-1]).unlink(missing_ok=True)
    value = parsed(cli(*args, "--json"))
    if name == "compact":
        assert {"view", "encoder_id", "optimize", "vacuumed_files", "version"} <= set(value)
    if name == "init":
        assert value == {"written": str(Path(args[-1]).resolve())}


def test_compact_prints_a_line_not_a_python_dict(built, cli):
    code, out, err = cli("compact", "--view", "sms", "--store", built["store"])
    assert code == 0, err
    assert out.startswith("sms / word2vec-") and "merged into" in out and "{" not in out


def test_show_completion_prints_the_bash_script():
    import subprocess
    import sys

    # --show-completion prints the script of the shell it runs under (typer detects it from the
    # parent processes: a word after the flag is not read), so the command runs under bash here
    # (the trailing ":" keeps bash from exec-ing into Python), whatever started pytest.
    out = subprocess.run(["bash", "-c", '"$0" -m flows.cli.main --show-completion; :', sys.executable], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert "_FEATURESTORE_COMPLETE=complete_bash" in out.stdout and "complete -o default -F" in out.stdout


def test_view_and_model_names_complete_from_the_store(built):
    import os
    import subprocess
    import sys

    def complete(*words: str) -> list[str]:
        line = ["featurestore", *words]
        env = {**os.environ, "_FEATURESTORE_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(line), "COMP_CWORD": str(len(line) - 1)}
        out = subprocess.run([sys.executable, "-m", "flows.cli.main"], env=env, capture_output=True, text=True, check=False)
        return out.stdout.split()

    store = str(built["store"])
    assert complete("search", "--store", store, "--view", "s") == ["sms"]
    assert complete("search", "--store", store, "--view", "x") == []
    assert complete("predict", "--store", store, "sp") == ["spam"]
    assert complete("predict", "--store", store, "spam:") == ["spam:1"]


def test_search_shows_each_hits_text_from_the_source_unless_ids_only(cli, tmp_path, sms_file, sms_lines, word2vec):
    store, source = tmp_path / "store", sms_file(30)
    code, _, err = cli("materialize", source, "--view", "bare", "--encoder", "word2vec", "--store", store, "--id-col", "@line",
                       "--keep", "label", "--runner", "inline")
    assert code == 0, err
    assert cli("index", "build", "--view", "bare", "--store", store)[0] == 0
    code, out, err = cli("search", "--view", "bare", "--id", "3", "-k", "2", "--store", store, "--json")
    assert code == 0, err
    hits = json.loads(out)[0]
    by_line = {str(n): line.partition("\t")[2] for n, line in enumerate(sms_lines[:30], 1)}
    assert hits and all(h["text"] == by_line[h["entity_id"]] for h in hits)  # the texts that were encoded, read from the source
    code, out, _ = cli("search", "--view", "bare", "--id", "3", "-k", "2", "--store", store, "--json", "--ids-only")
    assert code == 0 and all(set(h) == {"entity_id", "score"} for h in json.loads(out)[0])
    code, out, _ = cli("search", "--view", "bare", "--id", "3", "-k", "2", "--store", store)
    assert code == 0 and by_line[hits[0]["entity_id"]][:20] in out


def test_info_never_cuts_an_id_in_a_narrow_terminal(built, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    code, out, err = cli("info", "--store", built["store"])
    assert code == 0, err
    encoder_id = json.loads(cli("info", "--store", built["store"], "--json")[1])["tables"][0]["encoder_id"]
    assert encoder_id in out and "…" not in out.split(encoder_id)[0].splitlines()[-1]


def test_runs_lists_materialize_index_and_train_runs_with_their_counts(built, cli):
    from tests.conftest import assert_user_error

    store = built["store"]
    records = parsed(cli("runs", "--store", store, "--json"))
    kinds = [r["kind"] for r in records]
    assert kinds[:4] == ["materialize", "materialize", "index", "train"]
    first, second, index, train = records[:4]
    assert (first["encoded"], second["encoded"], second["skipped"]) == (80, 20, 80)
    assert (index["action"], index["rows"], index["added"]) == ("build", 100, 100)
    assert train["model"] == "spam:1" and train["rows"] == 100 and "f1" in train["metrics"]
    assert all("flow_run_id" not in r for r in records[:4])  # --runner inline: no Prefect run to name
    only = parsed(cli("runs", "--store", store, "--kind", "train", "--view", "sms", "--json"))
    assert [r["kind"] for r in only] == ["train"] * len(only) and only
    assert parsed(cli("runs", "--store", store, "--view", "other", "--json")) == []
    code, out, err = cli("runs", "--store", store, "--limit", "2")
    assert code == 0 and "runs (newest last)" in out and "(no Prefect)" in out
    before = {p: p.stat().st_mtime for p in store.rglob("*")}
    assert_user_error(cli("runs", "--store", store, "--kind", "trian"), "--kind must be one of: materialize, index, train, refresh. Got 'trian' instead.")
    assert {p: p.stat().st_mtime for p in store.rglob("*")} == before
