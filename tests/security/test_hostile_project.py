"""A project file is read with ``yaml.safe_load``: a YAML tag that would build a Python object (and
run code with it) is a one-line error naming the file and line, and runs nothing."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "tag",
    ["!!python/object/apply:os.system", "!!python/object/new:subprocess.Popen", "!!python/name:builtins.exec"],
)
def test_a_project_file_with_python_tags_runs_nothing(tmp_path, cli, tag):
    marker = tmp_path / "marker"
    config = tmp_path / "featurestore.yaml"
    config.write_text(f"store: ./store\nsources:\n  evil: {tag} [\"touch {marker}\"]\n", encoding="utf-8")
    code, out, err = cli("refresh", "--config", config)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: {config}: line 3: not valid YAML (could not determine a constructor for the tag")
    assert not marker.exists() and not (tmp_path / "store").exists()
