"""Frozen pretrained encoders behind one protocol, found by name."""

from featurestore.encoders.base import BaseEncoder, EncodeResult, Encoder, TokenEncodeResult, encoder_id_from_spec
from featurestore.encoders.registry import ENTRY_POINT_GROUP, from_meta, get_encoder, list_encoders

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseEncoder",
    "EncodeResult",
    "Encoder",
    "TokenEncodeResult",
    "encoder_id_from_spec",
    "from_meta",
    "get_encoder",
    "list_encoders",
]
