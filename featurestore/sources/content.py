"""What identifies a piece of content: its normalised form and the sha256 of that."""

from __future__ import annotations

import hashlib
import os
import unicodedata

_HASH_CHUNK = 1 << 20


def normalize_text(text: str) -> str:
    """NFC, surrounding whitespace stripped: the exact string the encoder sees and the hash covers."""
    return unicodedata.normalize("NFC", text).strip()


def content_hash(text: str) -> str:
    """sha256 hex digest of the normalised text's UTF-8 bytes."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def bytes_hash(data: bytes) -> str:
    """sha256 hex digest of raw bytes (images and other binary content)."""
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex digest of a file's bytes, read in 1 MiB chunks (equals ``bytes_hash`` of the bytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
