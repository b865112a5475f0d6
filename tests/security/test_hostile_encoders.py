"""Encoder refs that come from a store (a model manifest's ``encoder_ref``, a table's metadata) name
files anywhere: loading them must not run code. gensim native files are pickles (read with an
unpickler that builds only KeyedVectors and arrays); sentence-transformers folders are loaded
with ``trust_remote_code`` off, so code they name is never imported."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurestore.encoders import get_encoder
from featurestore.errors import EncoderError
from tests.conftest import GLOVE, need, snapshot
from tests.security.conftest import Marker
from tests.security.tampering import version_folder


def _point_model_at(root: Path, ref: str) -> None:
    """Make the spam model's manifest name encoder ``ref``, with the id that ref has here (what an
    attacker who can write the manifest writes, so that the id check passes)."""
    folder = version_folder(root)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoders"][0].update(encoder_ref=ref, encoder_options={}, encoder_id=get_encoder(ref).encoder_id)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_a_pickle_named_by_a_model_manifest_as_word_vectors_runs_nothing(model_store, tmp_path, cli):
    marker = tmp_path / "marker"
    evil = tmp_path / "vectors.kv"  # the suffix makes it gensim native: a pickle
    evil.write_bytes(pickle.dumps(Marker(marker)))
    folder = version_folder(model_store)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoders"][0].update(encoder_ref=f"w2v:{evil}", encoder_options={})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = snapshot(model_store)
    code, out, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: model spam v1 needs encoder 'w2v:{evil}', which is not available here: ")
    assert "asks to build pathlib.Path.touch, which a gensim KeyedVectors file does not hold; it is not loaded" in err
    assert not marker.exists()
    assert snapshot(model_store) == before


@pytest.mark.parametrize("sep_limit", [None, 1_000], ids=["arrays-inside", "arrays-beside"])
def test_gensim_native_files_still_load_with_the_restricted_unpickler(tmp_path, sep_limit):
    need(GLOVE)
    from gensim.models import KeyedVectors

    text = GLOVE / "glove.6B.50d.top5k.txt"
    kv = KeyedVectors.load_word2vec_format(str(text), no_header=True, limit=300)
    kv.save(str(tmp_path / "glove.kv"), **({"sep_limit": sep_limit} if sep_limit else {}))
    assert (tmp_path / "glove.kv.vectors.npy").exists() == bool(sep_limit)
    native = get_encoder(f"w2v:{tmp_path / 'glove.kv'}")
    assert native.format == "gensim" and native.dim == 50
    np.testing.assert_array_equal(native.vectors().vectors, kv.vectors)


def test_a_gensim_file_holding_another_class_is_refused(tmp_path):
    from collections import OrderedDict

    path = tmp_path / "odd.kv"
    path.write_bytes(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(EncoderError, match=r"asks to build collections\.OrderedDict, which a gensim KeyedVectors file does not hold"):
        get_encoder(f"w2v:{path}").vectors()


@pytest.fixture
def st_folder(tmp_path) -> Path:
    """MiniLM's folder with its configs copied and its weights linked: a model folder to tamper with."""
    from featurestore.encoders.sentence import minilm_path

    source, folder = minilm_path(), tmp_path / "st-model"
    for path in source.rglob("*"):
        target = folder / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target) if path.suffix == ".json" else os.symlink(path, target)
    return folder


def test_a_sentence_transformers_folder_naming_its_own_code_is_refused_without_importing_it(model_store, st_folder, tmp_path, cli):
    marker = tmp_path / "marker"
    modules = json.loads((st_folder / "modules.json").read_text())
    modules[0]["type"] = "modeling_evil.Evil"
    (st_folder / "modules.json").write_text(json.dumps(modules))
    (st_folder / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\nclass Evil:\n    pass\n")
    _point_model_at(model_store, f"st:{st_folder}")
    before = snapshot(model_store)
    code, out, err = cli("predict", "spam", "--store", model_store, "hello")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"featurestore: error: cannot load the sentence-transformers model at {st_folder}: ")
    assert "'modeling_evil.Evil', which is not part of Sentence Transformers" in err
    assert not marker.exists()
    assert snapshot(model_store) == before


def test_a_sentence_transformers_folder_with_broken_configs_is_one_line(st_folder):
    (st_folder / "modules.json").write_text("{not json")
    with pytest.raises(EncoderError, match=r"is not a sentence-transformers model folder: its JSON configs cannot be read"):
        get_encoder(f"st:{st_folder}")
