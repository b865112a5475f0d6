"""A store with a real spam model (word2vec features, 200 SMS messages), copied fresh for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import SMS, need


@pytest.fixture(scope="session")
def _model_store(tmp_path_factory, word2vec) -> Path:
    need(SMS)
    from featurestore.materialization import materialize
    from featurestore.sources import TextSource
    from models import spam
    from models.registry import save_model

    base = tmp_path_factory.mktemp("security")
    source = base / "sms.txt"
    source.write_text("\n".join(SMS.read_text(encoding="utf-8").splitlines()[:200]) + "\n", encoding="utf-8")
    root = base / "store"
    materialize(TextSource(str(source), format="sms", id_col="@line", keep=("label", "text")), "sms", "word2vec", store=root)
    save_model("spam", spam.train("sms", n_splits=2, store=root), store=root)
    return root


@pytest.fixture
def model_store(_model_store, tmp_path) -> Path:
    """A private copy of the store: ``models/spam/1`` is a real, loadable spam head."""
    root = tmp_path / "store"
    shutil.copytree(_model_store, root, symlinks=True)
    return root


class Marker:
    """A pickle that creates a file when it is unpickled (what a hostile pickle does, harmlessly)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))
