"""The exception tree: every class in featurestore.errors, drawn in its docstring, picklable."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import pytest

from featurestore import errors

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("featurestore", "models", "flows")


@pytest.mark.parametrize("name", errors.__all__)
def test_each_error_pickles_with_its_message(name):
    cls = getattr(errors, name)
    err = pickle.loads(pickle.dumps(cls("file.csv: line 3 is bad")))
    assert type(err) is cls and isinstance(err, errors.FeatureStoreError)
    assert str(err) == "file.csv: line 3 is bad"


def test_the_docstring_draws_every_class():
    drawn = set(errors.__doc__.split())
    assert set(errors.__all__) <= drawn


def test_no_error_class_is_defined_outside_the_errors_module():
    ours = set(errors.__all__)
    elsewhere = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "featurestore" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                    if bases & ours:
                        elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not elsewhere, elsewhere


def test_a_bad_argument_is_also_a_value_error():
    assert issubclass(errors.InvalidArgumentError, ValueError)
    assert issubclass(errors.InvalidArgumentError, errors.FeatureStoreError)
    assert issubclass(errors.UnknownModelError, errors.NotFoundError) and issubclass(errors.UnknownModelError, errors.ModelError)


def test_library_messages_name_parameters_not_flags():
    """A raise in featurestore/ or models/ never names a command-line flag (the CLI adds them)."""
    found = []
    for package in ("featurestore", "models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Raise) and node.exc is not None:
                    for const in ast.walk(node.exc):
                        if isinstance(const, ast.Constant) and isinstance(const.value, str) and " --" in f" {const.value}":
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {const.value!r}")
    assert not found, found
