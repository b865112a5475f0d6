"""A model folder from an untrusted source: crafted heads that would run code or read files outside
the store are refused in one line (exit 2) before anything is built, and the store is unchanged."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from tests.conftest import snapshot
from tests.security.conftest import Marker
from tests.security.tampering import call_node, json_node, plant, skops_archive, version_folder

REFUSED = "featurestore: error: model spam v1: head.skops holds types that no head of this project saves"


def _code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


# Callables that a trust of every type named numpy.*, scipy.* or sklearn.* admitted, and that run
# code or read files when skops calls them (ConstructorFromReduceNode: ``module.name(*args)``), plus
# the obvious ones that no prefix admitted. Each takes the marker path and where a pickle lies.
CALLS = {
    "numpy-runstring": lambda marker, pkl: ("numpy.testing._private.utils", "runstring", _code(marker), {}),
    "sklearn-run-python": lambda marker, pkl: ("sklearn.utils._testing", "assert_run_python_script_without_output", _code(marker)),
    "numpy-load-a-pickle": lambda marker, pkl: ("numpy", "load", str(pkl), None, True),
    "builtins-exec": lambda marker, pkl: ("builtins", "exec", _code(marker)),
    "os-system": lambda marker, pkl: ("os", "system", f"touch {marker}"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_crafted_head_that_would_run_code_is_refused_and_runs_nothing(model_store, tmp_path, cli, call):
    marker = tmp_path / "marker"
    pkl = tmp_path / "outside.pkl"  # a pickle outside the store that numpy.load(allow_pickle=True) would run
    pkl.write_bytes(pickle.dumps(Marker(marker)))
    module, name, *args = CALLS[call](marker, pkl)
    plant(version_folder(model_store), "head.skops", skops_archive(call_node(module, name, *args)))
    before = snapshot(model_store)
    code, out, err = cli("predict", "spam", "--store", model_store, "free entry, call now")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(REFUSED) and f"'{module}.{name} (ConstructorFromReduceNode)'" in err and "it is not loaded" in err
    assert not marker.exists()
    assert snapshot(model_store) == before


def test_the_crafted_runstring_head_does_run_code_when_skops_is_told_to_trust_it(tmp_path):
    """The archive of the test above is a working exploit: what the refusal stops is real."""
    import skops.io as sio

    marker = tmp_path / "marker"
    data = skops_archive(call_node("numpy.testing._private.utils", "runstring", _code(marker), {}))
    sio.loads(data, trusted=sio.get_untrusted_types(data=data))  # what a prefix allow-list did
    assert marker.read_text() == "ran"


def test_types_that_skops_trusts_by_default_are_refused_unless_a_head_saves_them(model_store, cli):
    """skops trusts every scikit-learn estimator and numpy ufunc by default; the registry trusts
    only the types its own heads save. A FunctionTransformer (default-trusted) is refused."""
    import numpy as np
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    data = sio.dumps(FunctionTransformer(np.exp).fit(np.ones((2, 2))))
    assert sio.get_untrusted_types(data=data) == []  # skops alone would load it without asking
    plant(version_folder(model_store), "head.skops", data)
    before = snapshot(model_store)
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err.startswith(REFUSED) and "FunctionTransformer" in err and err.count("\n") == 1
    assert snapshot(model_store) == before


@pytest.mark.parametrize(
    "node, named",
    [
        ({"__class__": "Pipeline", "__module__": "sklearn.pipeline", "__loader__": "MethodNode",
          "content": {"func": "fit", "obj": {"__class__": "Pipeline", "__module__": "sklearn.pipeline", "__loader__": "ObjectNode"}}},
         "'sklearn.pipeline.Pipeline (MethodNode)'"),
        ({"__class__": "partial", "__module__": "functools", "__loader__": "PartialNode", "content": {}}, "'functools.partial (PartialNode)'"),
        ({"__class__": "attrgetter", "__module__": "operator", "__loader__": "OperatorFuncNode", "attrs": json_node("x")},
         "'operator.attrgetter (OperatorFuncNode)'"),
        ({"__class__": "add", "__module__": "numpy", "__loader__": "FunctionNode"}, "'numpy.add (FunctionNode)'"),
    ],
    ids=["method", "partial", "operator", "function"],
)
def test_node_kinds_that_hand_out_callables_are_refused_even_for_allowed_types(model_store, cli, node, named):
    plant(version_folder(model_store), "head.skops", skops_archive(node))
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err.startswith(REFUSED) and named in err and err.count("\n") == 1


def test_the_untouched_model_still_predicts(model_store, cli):
    code, out, err = cli("predict", "spam", "--store", model_store, "--json", "Sorry, I'll call you later")
    assert code == 0 and err == "" and json.loads(out)[0]["label"] == "ham"


@pytest.mark.parametrize("listed", ["../../../../outside.json", "/etc/hostname", "head.skops/../report.json"])
def test_a_manifest_naming_files_outside_its_folder_is_refused_without_reading_them(model_store, cli, listed, tmp_path):
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][listed] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(model_store)
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: model spam v1: manifest.json lists {listed!r}, which is not a model file")
    assert snapshot(model_store) == before


@pytest.mark.parametrize("file", ["head.skops", "manifest.json", "report.json"])
def test_a_link_in_a_model_folder_is_refused(model_store, cli, tmp_path, file):
    folder = version_folder(model_store)
    outside = tmp_path / f"outside-{file}"
    outside.write_bytes((folder / file).read_bytes())  # the same bytes: only the link is wrong
    (folder / file).unlink()
    os.symlink(outside, folder / file)
    before = snapshot(model_store)
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: model spam v1: {file} is a link or not a plain file")
    assert snapshot(model_store) == before


def test_a_torch_head_class_off_the_allow_list_is_refused(model_store, cli):
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["head"] = {"format": "safetensors", "class": "os.system"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and err == "featurestore: error: model spam v1: head class 'os.system' is not an allowed torch head; it is not loaded\n"


@pytest.mark.parametrize(
    "training_set, shown",
    [
        ({"py/object": "os.system", "py/reduce": ["touch MARKER"]}, "unknown field 'py/object'"),
        ("__import__('os').system('touch MARKER')", "the training manifest is not a JSON object (got str)"),
        ("TABLES", "`tables[0]` is not an object of view, encoder_id and version"),
    ],
)
def test_a_crafted_training_manifest_is_refused_in_one_line_and_runs_nothing(model_store, cli, tmp_path, training_set, shown):
    marker = tmp_path / "ran"
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    if training_set == "TABLES":
        training_set = {**manifest["training_set"], "tables": [{"view": "sms", "encoder_id": "x", "version": 0, "loader": f"open({str(marker)!r})"}]}
    elif isinstance(training_set, dict):
        training_set = {**training_set, "py/reduce": [f"touch {marker}"]}
    else:
        training_set = training_set.replace("MARKER", str(marker))
    manifest["training_set"] = training_set
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(model_store)
    for args in (("predict", "spam", "hello"), ("evaluate", "spam")):
        code, out, err = cli(*args, "--store", model_store)
        assert code == 2 and out == "" and err.count("\n") == 1, err
        assert err.startswith("featurestore: error: model spam v1: manifest.json's training_set cannot be read (") and shown in err
    assert not marker.exists() and snapshot(model_store) == before
