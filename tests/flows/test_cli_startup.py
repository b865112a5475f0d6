"""The commands that do little import only what they need (their times: bench/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# What no quick command needs: each costs 0.2-3 s of start-up on 2 cores.
HEAVY = ("torch", "prefect", "duckdb", "sklearn", "scipy", "plotly", "matplotlib", "faiss", "sentence_transformers",
         "transformers", "gensim", "skops", "onnxruntime", "uvicorn", "fastapi")

RUN = (
    "import json, sys\n"
    "from flows.cli.main import main\n"
    "code = main(sys.argv[1:])\n"
    "print(json.dumps({'code': code, 'loaded': [m for m in HEAVY if m in sys.modules], 'table_libs': [m for m in ('pyarrow', 'numpy', 'deltalake') if m in sys.modules]}), file=sys.stderr)\n"
)


def imports_of(*args: str) -> dict:
    """Exit code, heavy modules and table libraries loaded by one ``featurestore`` process."""
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n{RUN}", *args], capture_output=True, text=True, check=False)
    return json.loads(out.stderr.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def small_store(tmp_path_factory, sms_lines, word2vec):
    """View 'sms' (word2vec, 60 SMS) and a logistic spam head: what info and models list."""
    from featurestore import TextSource, materialize
    from flows.train import train_and_register

    root = tmp_path_factory.mktemp("startup")
    (root / "SMSSpamCollection").write_text("\n".join(sms_lines[:60]) + "\n", encoding="utf-8")
    materialize(TextSource(str(root / "SMSSpamCollection"), format="sms", id_col="@line", keep=("label",)), "sms", "word2vec", store=str(root / "store"))
    train_and_register("spam", "sms", store=str(root / "store"), name="spam", options={"n_splits": 3, "head": "logistic"})
    return str(root / "store")


@pytest.mark.parametrize(("args", "table_libs"), [(["--help"], []), (["search", "--help"], []), (["materialize", "--help"], []),
                                                  (["encoders"], ["numpy"])], ids=["help", "search-help", "materialize-help", "encoders"])
def test_help_and_encoders_import_no_table_or_model_library(args, table_libs):
    seen = imports_of(*args)
    assert seen["code"] == 0
    assert seen["loaded"] == [] and seen["table_libs"] == table_libs, seen


@pytest.mark.parametrize("command", ["info", "models"])
def test_info_and_models_import_no_heavy_library(small_store, command):
    seen = imports_of(command, "--store", small_store)
    assert seen["code"] == 0 and seen["loaded"] == [], seen


def test_a_user_error_imports_no_heavy_library(small_store):
    seen = imports_of("search", "--view", "smss", "--id", "3", "--store", small_store)
    assert seen["code"] == 2 and seen["loaded"] == [], seen
