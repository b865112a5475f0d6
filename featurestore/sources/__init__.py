"""Sources: files of records streamed in batches, with normalised content and its hash."""

from featurestore.sources.content import bytes_hash, content_hash, normalize_text
from featurestore.sources.formats import FORMATS
from featurestore.sources.text import LINE_ID, TextBatch, TextSource

__all__ = ["FORMATS", "LINE_ID", "TextBatch", "TextSource", "bytes_hash", "content_hash", "normalize_text"]
