"""Encoders by name, and the one rebuild of an encoder recorded by a table, a model or a run plan."""

from __future__ import annotations

import pytest

from featurestore.encoders import from_meta, get_encoder
from featurestore.errors import EncoderError
from tests.conftest import GLOVE, need

VECTORS = GLOVE / "glove.6B.50d.top5k.txt"


def test_from_meta_rebuilds_the_recorded_encoder_with_its_options():
    need(VECTORS)
    ref = f"w2v:{VECTORS}"
    sif = get_encoder(ref, weighting="sif")
    rebuilt = from_meta(ref, {"weighting": "sif"}, expect_id=sif.encoder_id, owner="view 'glove'")
    assert rebuilt.encoder_id == sif.encoder_id != get_encoder(ref).encoder_id
    assert rebuilt.weighting == "sif"


def test_from_meta_refuses_an_encoder_whose_id_now_differs():
    need(VECTORS)
    ref = f"w2v:{VECTORS}"
    have = get_encoder(ref).encoder_id
    with pytest.raises(EncoderError) as info:
        from_meta(ref, {}, expect_id="w2v-0000000000", owner="view 'glove'")
    assert str(info.value) == (
        f"view 'glove' expects encoder w2v-0000000000, but {ref!r} is {have} here; its weights or options differ, "
        "so inputs cannot be encoded the same way"
    )


def test_from_meta_refuses_a_record_without_a_ref_or_with_a_missing_encoder(tmp_path):
    with pytest.raises(EncoderError, match=r"^model spam v1 does not record how to rebuild encoder w2v-0000000000$"):
        from_meta(None, None, expect_id="w2v-0000000000", owner="model spam v1")
    gone = tmp_path / "gone.bin"
    with pytest.raises(EncoderError) as info:
        from_meta(f"w2v:{gone}", {}, expect_id="w2v-0000000000", owner="model spam v1")
    assert str(info.value) == (f"model spam v1 needs encoder 'w2v:{gone}', which is not available here: "
                               f"word vectors not found: {gone}; pass an existing file with w2v:/path/to/vectors")


def test_an_option_the_encoder_does_not_take_is_named():
    need(VECTORS)
    with pytest.raises(EncoderError, match=r"^encoder 'w2v' does not take `layers`; leave it out or use an encoder that does$"):
        get_encoder(f"w2v:{VECTORS}", layers="last4")
