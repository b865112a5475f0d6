"""Frozen pretrained encoders behind one protocol, found by name."""

from featurestore.encoders.base import BaseEncoder, EncodeResult, Encoder, TokenEncodeResult, encoder_id_from_spec
from featurestore.encoders.registry import ENTRY_POINT_GROUP, get_encoder, list_encoders

__all__ = [
    "ENTRY_POINT_GROUP",
    "BaseEncoder",
    "EncodeResult",
    "Encoder",
    "TokenEncodeResult",
    "encoder_id_from_spec",
    "get_encoder",
    "list_encoders",
]
