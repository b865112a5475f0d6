"""Keys of the Prefect artifacts the flows publish."""

from __future__ import annotations

import re

__all__ = ["artifact_key"]


def artifact_key(*parts: str) -> str:
    """The artifact key of ``parts`` joined by dashes: lowercase letters, digits and dashes (what
    Prefect accepts), at most 100 characters; e.g. ``artifact_key("index", view, encoder_id)``."""
    return re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())[:100]
