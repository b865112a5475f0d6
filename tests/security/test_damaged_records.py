"""Run records (``runs/*.json``) are history, read by info, reports and the heads that need a
view's raw source: a damaged or foreign one is one line naming it, and the source it names is
rebuilt only as one of the known source kinds (nothing is imported by a recorded name)."""

from __future__ import annotations

import json

import pytest

from featurestore.errors import SourceError
from featurestore.store import Store
from tests.conftest import snapshot


def _records(root):
    return sorted((root / "runs").glob("*.json"))


@pytest.mark.parametrize("text", ["{oops", "[1, 2]", "\x00\x01"], ids=["not-json", "not-an-object", "binary"])
def test_a_damaged_run_record_is_one_line_naming_it(model_store, cli, text):
    [record] = _records(model_store)[-1:]
    record.write_text(text)
    before = snapshot(model_store)
    code, out, err = cli("info", "--store", model_store)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: the run record {record} cannot be read")
    assert err.endswith("; delete it (run records only keep a store's history)\n")
    assert snapshot(model_store) == before


@pytest.mark.parametrize(
    "spec, says",
    [
        ({"kind": "os:system", "path": "/bin/sh"}, "a recorded source is of kind 'os:system'; kinds: text, image, conll"),
        ({"path": "x"}, "a recorded source is of kind None"),
        ({"kind": "text", "path": "x", "command": "rm -rf /"}, "a recorded text source does not describe one ("),
    ],
    ids=["foreign-kind", "no-kind", "foreign-field"],
)
def test_a_recorded_source_is_rebuilt_only_as_a_known_kind(model_store, spec, says):
    [record] = _records(model_store)[-1:]
    run = json.loads(record.read_text())
    run["source_spec"] = {**spec, "path": str(record)} if "path" in spec else spec  # a path that exists
    record.write_text(json.dumps(run))
    with pytest.raises(SourceError, match="^" + says.replace("(", r"\(")):
        Store(model_store).view_source(run["view"], run["encoder_id"])
