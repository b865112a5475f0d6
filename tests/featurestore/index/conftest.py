"""Fixtures of the index tests."""

from __future__ import annotations

import pytest

from featurestore import Store, TextSource, materialize


@pytest.fixture
def sms_view(tmp_path, sms_file, word2vec):
    source = TextSource(str(sms_file(300)), format="sms", id_col="@line", keep=("label",))
    materialize(source, "sms", "word2vec", store=tmp_path)
    return Store(tmp_path)
