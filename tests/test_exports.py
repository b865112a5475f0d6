"""The public API is exactly __all__, and importing it is cheap and side-effect free."""

from __future__ import annotations

import subprocess
import sys

import featurestore

EXPECTED = {
    "BaseEncoder",
    "DependencyError",
    "Encoder",
    "EncoderError",
    "FeatureFrame",
    "FeatureStoreError",
    "FeatureTable",
    "SchemaMismatchError",
    "SourceError",
    "Store",
    "StoreError",
    "TextSource",
    "TrainingSet",
    "build_index",
    "ensure_index",
    "get_encoder",
    "list_encoders",
    "materialize",
    "search",
    "searcher",
    "training_set",
    "update_index",
}


def test_all_is_exact():
    assert set(featurestore.__all__) == EXPECTED
    for name in featurestore.__all__:
        assert hasattr(featurestore, name)


def test_import_is_cheap_and_has_no_side_effects():
    code = (
        "import os, sys, warnings; import numpy, pyarrow;"  # their own import-time filters are not ours
        "env = dict(os.environ); filters = list(warnings.filters);"
        "import featurestore;"
        "heavy = [m for m in ('torch', 'prefect', 'faiss', 'sentence_transformers', 'gensim') if m in sys.modules];"
        "assert not heavy, heavy; assert dict(os.environ) == env; assert warnings.filters == filters; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_errors_pickle_across_processes():
    import pickle

    for cls in (featurestore.SourceError, featurestore.StoreError, featurestore.SchemaMismatchError):
        err = pickle.loads(pickle.dumps(cls("file.csv: line 3 is bad")))
        assert isinstance(err, featurestore.FeatureStoreError)
        assert str(err) == "file.csv: line 3 is bad"
