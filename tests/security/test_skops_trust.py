"""The registry's skops allow-lists are exactly what this project's heads save: every head kind is
trained on tiny data and its archive checked, so a new head that needs another type fails here
instead of silently widening what a model folder may make the process build."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from models import classify, lexical, ner, ranking
from models.headfiles import SKOPS_NODES, SKOPS_TYPES, head_files, skops_refusals


def _tiny(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(40, 6)).astype(np.float32), np.array(["ham", "spam"] * 20, dtype=object)


def _heads() -> dict[str, object]:
    X, y = _tiny()
    texts = ["WINNER! claim your prize", "see you at lunch", "call 0800 now", "ok thanks"] * 10
    tokens = [X[:20], X[20:]]
    tags = [["O"] * 18 + ["B-PER", "I-PER"], ["B-LOC"] + ["O"] * 19]
    return {
        "classify-logistic": classify.make_head("logistic").fit(X, y),
        "classify-logistic-balanced": classify.make_head("logistic", class_weight="balanced").fit(X, y),
        "classify-mlp": classify.make_head("mlp", hidden=(4,)).fit(X, y),
        "classify-logistic-cv": classify.make_head("logistic-cv").fit(X, y),
        "classify-int-labels": classify.make_head("logistic").fit(X, np.arange(40) % 3),
        "ranking": ranking.make_head(0).fit(X, np.arange(40) % 2),
        "ner-logistic": ner.make_head("logreg", {"max_iter": 50}).fit(tokens, tags),
        "text-hybrid": lexical.make_text_head("hybrid", 6, class_weight="balanced", binary=True).fit(lexical.head_input(X, texts), y),
        "text-lexical": lexical.make_text_head("lexical", 6, class_weight=None, binary=False).fit(lexical.head_input(X, texts), np.arange(40) % 3),
    }


def _schema_types(data: bytes) -> tuple[set[str], set[str]]:
    """Every (node kind, type) in an archive's schema.json."""
    kinds, types, stack = set(), set(), [json.loads(zipfile.ZipFile(io.BytesIO(data)).read("schema.json"))]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                kinds.add(node["__loader__"])
                types.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return kinds, types


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, bytes]:
    out = {}
    for name, head in _heads().items():
        folder = tmp_path_factory.mktemp(name)
        head_files(folder, head)  # the registry's own writer: the bytes save_model stores
        out[name] = (folder / "head.skops").read_bytes()
    return out


def test_every_head_kind_saves_only_allowed_types_and_node_kinds(archives):
    import skops.io as sio

    for name, data in archives.items():
        kinds, types = _schema_types(data)
        assert kinds <= SKOPS_NODES, (name, kinds - SKOPS_NODES)
        assert types <= SKOPS_TYPES, (name, types - SKOPS_TYPES)
        assert set(sio.get_untrusted_types(data=data)) <= SKOPS_TYPES, name
        assert skops_refusals(data) == [], name


def test_the_allow_lists_hold_nothing_that_no_head_saves(archives):
    """Exact, not generous: every allowed name is used by some head."""
    used_kinds, used_types = set(), set()
    for data in archives.values():
        kinds, types = _schema_types(data)
        used_kinds |= kinds
        used_types |= types
    assert SKOPS_NODES == used_kinds
    assert SKOPS_TYPES == used_types


def test_no_allowed_name_is_a_prefix_or_a_callable():
    import importlib

    for name in SKOPS_TYPES:
        module, _, attr = name.rpartition(".")
        assert isinstance(getattr(importlib.import_module(module), attr), type), name
