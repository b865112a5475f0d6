"""The ONNX Runtime backend of minilm / st: encoders: same vectors, same ids, same tokens as torch;
the knob that opts out; a tampered or failed export; a text query process without torch.

The export is made once per test session (in the session's FEATURESTORE_CACHE_DIR, see
tests/conftest.py) by the first encoder that needs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the onnx extra")

from featurestore.encoders import get_encoder, onnx_backend, onnx_text, sentence  # noqa: E402
from featurestore.encoders.sentence import minilm_path  # noqa: E402
from featurestore.errors import EncoderError  # noqa: E402
from tests.conftest import (
    assert_user_error,  # noqa: E402
    snapshot,  # noqa: E402
)

HEAVY = ("torch", "transformers", "sentence_transformers")


@pytest.fixture(scope="module")
def onnx_minilm():
    enc = get_encoder("minilm", backend="auto")
    enc.load()  # exports once per session, or loads the session's export
    assert enc.backend == "onnx", enc.backend_reason
    return enc


@pytest.fixture(scope="module")
def torch_minilm():
    enc = get_encoder("minilm", backend="torch")
    enc.load()
    assert enc.backend == "torch"
    return enc


@pytest.fixture(scope="module")
def texts(sms_lines):
    return list(onnx_text.CHECK_TEXTS) + [line.split("\t", 1)[1] for line in sms_lines[:32]]


def _worst_cos(a: np.ndarray, b: np.ndarray) -> float:
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.abs(cos - 1).max())


def test_onnx_vectors_equal_torch_vectors_and_the_check_is_recorded(onnx_minilm, torch_minilm, texts):
    got, want = onnx_minilm.encode(texts), torch_minilm.encode(texts)
    assert got.shape == want.shape == (len(texts), 384) and got.dtype == np.float32
    assert _worst_cos(got, want) <= 1e-5
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    folder = onnx_backend.cache_folder("minilm", onnx_minilm.spec["weights"], onnx_minilm._onnx().plan)
    sidecar = json.loads((folder / onnx_backend.SIDECAR).read_text())
    assert sidecar["check"]["passed"] is True and sidecar["check"]["texts"] == len(onnx_text.CHECK_TEXTS)
    assert 0 <= sidecar["check"]["max_abs_cos_minus_1"] <= 1e-5
    assert sidecar["weights_digest"] == onnx_minilm.spec["weights"] and sidecar["pooling"] == "mean" and sidecar["normalize"] is True


def test_tokenizer_ids_equal_the_transformers_tokenizer(onnx_minilm, torch_minilm, texts):
    hf = torch_minilm.model().tokenizer
    ours = onnx_minilm._onnx().tokenizer
    want = hf(texts, truncation=True, max_length=256)["input_ids"]
    assert ours.ids(texts) == want
    assert max(len(row) for row in want) == 256  # the long texts were truncated, on both sides
    assert ours.pieces(texts) == hf(texts, add_special_tokens=False, verbose=False)["input_ids"]


def test_same_encoder_id_and_stats_with_either_backend(onnx_minilm, torch_minilm, texts):
    assert onnx_minilm.encoder_id == torch_minilm.encoder_id == get_encoder("minilm").encoder_id
    assert onnx_minilm.spec == torch_minilm.spec
    a, b = onnx_minilm.encode_with_stats(texts[:14]), torch_minilm.encode_with_stats(texts[:14])
    np.testing.assert_array_equal(a.n_tokens, b.n_tokens)
    np.testing.assert_array_equal(a.n_oov, b.n_oov)
    assert a.n_tokens.max() > 256  # counted before truncation, as torch's side counts them


@pytest.mark.parametrize("mode", onnx_text.POOLINGS)
@pytest.mark.parametrize("normalize", [False, True])
def test_numpy_pooling_equals_sentence_transformers_modules(mode, normalize):
    import torch
    from sentence_transformers.models import Normalize, Pooling

    rng = np.random.default_rng(0)
    states = rng.normal(size=(3, 7, 16)).astype(np.float32)
    mask = np.array([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5], dtype=np.int64)
    features = {"token_embeddings": torch.from_numpy(states), "attention_mask": torch.from_numpy(mask)}
    out = Pooling(16, pooling_mode=mode)(features)
    if normalize:
        out = Normalize()(out)
    np.testing.assert_allclose(onnx_text.pool(states, mask, mode, normalize), out["sentence_embedding"].numpy(), atol=1e-6)


def _model_copy(tmp_path: Path, modules: list[dict] | None = None, pooling: dict | None = None) -> Path:
    """A sentence-transformers folder with MiniLM's files (linked) and its own modules / pooling config."""
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    for item in minilm_path().iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item)
    (folder / "1_Pooling").mkdir()
    source = json.loads((minilm_path() / "1_Pooling" / "config.json").read_text())
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling or source))
    if modules is not None:
        (folder / "modules.json").unlink()
        (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def test_a_module_stack_the_backend_does_not_reproduce_stays_on_torch_with_the_reason(tmp_path, capsys):
    modules = json.loads((minilm_path() / "modules.json").read_text())
    dense = [*modules[:2], {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]
    enc = get_encoder(f"st:{_model_copy(tmp_path, modules=dense)}")
    assert enc.backend_reason == "model: its modules are Transformer -> Pooling -> Dense; the ONNX backend runs Transformer -> Pooling [-> Normalize] only"
    assert capsys.readouterr().err == ""  # recorded, not said: such a model simply runs on torch
    with pytest.raises(EncoderError, match="st cannot run through ONNX Runtime here: model: its modules are"):
        get_encoder(f"st:{_model_copy(tmp_path / 'b', modules=dense)}", backend="onnx").load()


def test_cls_pooling_is_read_from_the_pooling_config(tmp_path):
    folder = _model_copy(tmp_path, pooling={"word_embedding_dimension": 384, "pooling_mode": "cls"})
    modules = json.loads((folder / "modules.json").read_text())
    plan = onnx_text.plan(folder, {"modules": [m["type"].rpartition(".")[2] for m in modules[:2]], "max_seq_length": 128, "lowercase": False})
    assert (plan.pooling, plan.normalize, plan.max_length) == ("cls", False, 128)
    with pytest.raises(onnx_backend.Unsupported, match="its pooling is lasttoken"):
        onnx_text.plan(_model_copy(tmp_path / "b", pooling={"pooling_mode_lasttoken": True}), {"modules": ["Transformer", "Pooling"], "max_seq_length": 8, "lowercase": False})


TOKEN_TEXTS = [
    "EU rejects German call to boycott British lamb .",
    "Peter Blackburn",
    "Héllo wörld — naïve café, São Paulo 🙂 a\x07b " * 30,  # past one window: read in overlapping windows
    "?!",
    "",
]


@pytest.mark.parametrize("layers", ["last4", "last"])
def test_token_vectors_through_onnx_equal_torch_with_the_same_words_and_oov(layers, onnx_minilm):
    ours = get_encoder("minilm", granularity="token", layers=layers)
    theirs = get_encoder("minilm", granularity="token", layers=layers, backend="torch")
    assert ours.backend == "onnx", ours.backend_reason
    assert theirs.backend == "torch" and ours.encoder_id == theirs.encoder_id
    got, want = ours.encode_tokens(TOKEN_TEXTS), theirs.encode_tokens(TOKEN_TEXTS)
    assert got.tokens == want.tokens and len(got.tokens[2]) > 256
    for a, b, oa, ob in zip(got.vectors, want.vectors, got.oov, want.oov):
        np.testing.assert_array_equal(oa, ob)
        live = np.linalg.norm(b, axis=1) > 0  # a dropped control character has a zero vector on both sides
        np.testing.assert_array_equal(np.linalg.norm(a, axis=1) > 0, live)
        if live.any():
            assert _worst_cos(a[live], b[live]) <= 1e-5
    words = [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    given, plain = ours.encode_tokens([" ".join(w) for w in words], tokens=words), theirs.encode_tokens([" ".join(w) for w in words], tokens=words)
    assert all(_worst_cos(a, b) <= 1e-5 for a, b in zip(given.vectors, plain.vectors))
    plan = ours._onnx().plan
    folder = onnx_backend.cache_folder("minilm", ours.spec["weights"], plan)
    sidecar = json.loads((folder / onnx_backend.SIDECAR).read_text())
    assert sidecar["layers"] == layers and sidecar["check"]["passed"] is True and sidecar["check"]["max_abs_cos_minus_1"] <= 1e-5
    # the last layer's export is the sentence encoder's own (one folder); last4 has its own
    same = folder == onnx_backend.cache_folder("minilm", onnx_minilm.spec["weights"], onnx_minilm._onnx().plan)
    assert same is (layers == "last")


def test_long_text_windows_through_onnx_equal_torch(onnx_minilm):
    ours, theirs = get_encoder("minilm", long_text="windows"), get_encoder("minilm", long_text="windows", backend="torch")
    assert ours.backend == "onnx" and theirs.backend == "torch"
    texts = [t for t in TOKEN_TEXTS if t.strip()]
    assert _worst_cos(ours.encode(texts), theirs.encode(texts)) <= 1e-5


@pytest.fixture(scope="module")
def int8_minilm(onnx_minilm):
    enc = get_encoder("minilm-int8")
    enc.load()  # exported and quantized once per session
    return enc


def test_the_int8_variant_keeps_a_mean_cosine_of_0_99_to_fp32_on_real_sms(int8_minilm, onnx_minilm, sms_lines):
    texts = list(dict.fromkeys(line.split("\t", 1)[1] for line in sms_lines[:300]))  # a fixed slice: 290 distinct SMS
    got, want = int8_minilm.encode(texts), onnx_minilm.encode(texts)
    cos = (got * want).sum(axis=1)  # both L2-normalised
    assert 0.99 <= cos.mean() < 0.9999, cos.mean()  # close to fp32, and not fp32 (it is quantized)
    assert int8_minilm.backend == "onnx" and int8_minilm.encoder_id.startswith("minilm-int8-")
    assert int8_minilm.encoder_id != onnx_minilm.encoder_id and int8_minilm.spec["quantization"] == onnx_text.INT8
    folder = onnx_backend.cache_folder("minilm-int8", int8_minilm.spec["weights"], int8_minilm._onnx().plan)
    sidecar = json.loads((folder / onnx_backend.SIDECAR).read_text())
    assert sidecar["check"]["passed"] is True and sidecar["check"]["tolerance"] == 0.01
    assert 0 < sidecar["check"]["one_minus_mean_cos"] <= 0.01 and sidecar["quantization"] == onnx_text.INT8
    fp32 = onnx_backend.cache_folder("minilm", onnx_minilm.spec["weights"], onnx_minilm._onnx().plan) / onnx_backend.MODEL_FILE
    assert (folder / onnx_backend.MODEL_FILE).stat().st_size < fp32.stat().st_size * 0.75  # int8 MatMul weights (the embeddings stay fp32)
    assert sorted(p.name for p in folder.iterdir()) == [onnx_backend.MODEL_FILE, onnx_backend.SIDECAR]  # no fp32 copy left


def test_the_int8_variant_refuses_torch_and_token_vectors_in_one_line(tmp_path, sms_file, cli, monkeypatch):
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "auto")  # --backend sets it in this process: put back afterwards
    with pytest.raises(EncoderError, match=r"^minilm-int8 is quantized for ONNX Runtime and has no torch backend; use backend auto or onnx"):
        get_encoder("minilm-int8", backend="torch")
    with pytest.raises(EncoderError, match=r"^minilm-int8 gives sentence vectors of texts truncated to one window"):
        get_encoder("minilm-int8", granularity="token")
    store = tmp_path / "store"
    before = snapshot(store)
    assert_user_error(
        cli("materialize", sms_file(20), "--view", "sms", "--encoder", "minilm-int8", "--store", store, "--runner", "inline", "--backend", "torch"),
        "minilm-int8 is quantized for ONNX Runtime and has no torch backend",
    )
    assert snapshot(store) == before


def test_the_environment_variable_chooses_the_backend(monkeypatch, onnx_minilm):
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "torch")
    assert get_encoder("minilm").requested_backend == "torch"
    assert get_encoder("minilm").backend_reason == "the torch backend was asked for"
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "onnx")
    assert get_encoder("minilm").backend == "onnx"
    monkeypatch.setenv("FEATURESTORE_ENCODER_BACKEND", "tensorrt")
    with pytest.raises(EncoderError, match=r"^FEATURESTORE_ENCODER_BACKEND must be one of auto, torch, onnx. Got 'tensorrt' instead.$"):
        get_encoder("minilm")


def test_a_bad_backend_option_is_one_line_exit_2_and_the_store_unchanged(tmp_path, sms_file, cli):
    store = tmp_path / "store"
    before = snapshot(store)
    assert_user_error(
        cli("materialize", sms_file(20), "--view", "sms", "--encoder", "minilm", "--store", store, "--runner", "inline", "--backend", "gpu"),
        "backend must be one of auto, torch, onnx. Got 'gpu' instead.",
    )
    assert_user_error(cli("search", "--view", "sms", "--store", store, "--text", "hi", "--backend", "gpu"), "backend must be one of auto, torch, onnx")
    assert snapshot(store) == before and "FEATURESTORE_ENCODER_BACKEND" not in os.environ


@pytest.fixture
def own_cache(tmp_path, monkeypatch, onnx_minilm):
    """A cache folder of this test holding a copy of the session's export, and no export loaded in this process."""
    cache = tmp_path / "cache"
    source = onnx_backend.cache_folder("minilm", onnx_minilm.spec["weights"], onnx_minilm._onnx().plan)
    monkeypatch.setenv("FEATURESTORE_CACHE_DIR", str(cache))
    target = onnx_backend.cache_folder("minilm", onnx_minilm.spec["weights"], onnx_minilm._onnx().plan)
    shutil.copytree(source, target)
    monkeypatch.setattr(sentence, "_ONNX", {})
    monkeypatch.setattr(onnx_backend, "_SEEN", set())
    return target


@pytest.mark.slow
def test_a_tampered_export_is_refused_in_one_line_and_exported_again(own_cache, onnx_minilm, capsys):
    model = own_cache / onnx_backend.MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    enc = get_encoder("minilm")
    vectors = enc.encode(["win a free prize", "see you at lunch"])
    assert enc.backend == "onnx"
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"featurestore: warning: {model} is not the file exported (its sha256 differs from onnx.json); exporting it again",
        "featurestore: exporting minilm to ONNX (once per weights file)...",
    ]
    np.testing.assert_allclose(vectors, onnx_minilm.encode(["win a free prize", "see you at lunch"]), atol=1e-6)
    sidecar = json.loads((own_cache / onnx_backend.SIDECAR).read_text())
    import hashlib

    assert hashlib.sha256(model.read_bytes()).hexdigest() == sidecar["onnx_sha256"]
    assert sorted(p.name for p in own_cache.parent.iterdir()) == [own_cache.name, f"{own_cache.name}.lock"]  # no temporary folder left


def test_an_export_that_failed_its_check_keeps_torch_and_says_so_once(own_cache, capsys):
    sidecar = json.loads((own_cache / onnx_backend.SIDECAR).read_text())
    sidecar["check"].update(passed=False, max_abs_cos_minus_1=0.02, reason="max |cos - 1| = 0.02 on 16 texts, above 1e-05")
    (own_cache / onnx_backend.SIDECAR).write_text(json.dumps(sidecar))
    enc = get_encoder("minilm")
    assert enc.backend_reason == "model: its ONNX export failed the check against torch: max |cos - 1| = 0.02 on 16 texts, above 1e-05"
    assert get_encoder("minilm").backend == "torch"
    err = capsys.readouterr().err
    assert err.count("featurestore: warning: minilm runs on torch, not ONNX Runtime: model: its ONNX export failed the check") == 1


@pytest.fixture(scope="module")
def minilm_store(tmp_path_factory, sms_lines, onnx_minilm):
    """View 'sms' (minilm, 60 SMS, label kept) with an index, made through the CLI."""
    from flows.cli.main import main

    root = tmp_path_factory.mktemp("onnx")
    source = root / "SMSSpamCollection"
    source.write_text("\n".join(sms_lines[:60]) + "\n", encoding="utf-8")
    store = root / "store"
    args = ["materialize", source, "--view", "sms", "--encoder", "minilm", "--store", store, "--id-col", "@line", "--keep", "label", "--runner", "inline"]
    assert main([str(a) for a in args]) == 0
    assert main(["index", "build", "--view", "sms", "--store", str(store)]) == 0
    return store


def _search_process(store: Path, *extra: str) -> tuple[list, set[str], str]:
    """A one-query ``featurestore search --text`` process: its hits, the modules it imported, its stderr."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "flows.cli.main", "search", "--view", "sms", "--store", str(store),
         "--text", "win a free prize, call now", "-k", "3", "--json", *extra],
        capture_output=True, text=True, check=False, env={**os.environ, "FEATURESTORE_ENCODER_BACKEND": ""},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    modules = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    imported = {name.split(".")[0] for name in modules}  # a package counts when any of its modules was imported
    rest = "\n".join(line for line in out.stderr.splitlines() if not line.startswith("import time:"))
    return json.loads(out.stdout), imported, rest


def test_a_text_search_process_with_a_cached_export_imports_no_torch(minilm_store):
    hits, imported, err = _search_process(minilm_store)
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert {"onnxruntime", "tokenizers"} <= imported and err == ""
    torch_hits, torch_imported, _ = _search_process(minilm_store, "--backend", "torch")
    assert set(HEAVY) <= torch_imported and "onnxruntime" not in torch_imported
    assert [h["entity_id"] for h in hits[0]] == [h["entity_id"] for h in torch_hits[0]]
    np.testing.assert_allclose([h["score"] for h in hits[0]], [h["score"] for h in torch_hits[0]], atol=1e-5)
