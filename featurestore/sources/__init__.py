"""Sources: files of records streamed in batches, with normalised content and its hash."""

from featurestore.sources.batch import Source, SourceBatch, from_dict, to_dict
from featurestore.sources.conll import ConllSource, iob1_to_bio
from featurestore.sources.content import bytes_hash, content_hash, normalize_text
from featurestore.sources.formats import FORMATS
from featurestore.sources.images import ImageSource
from featurestore.sources.opening import SOURCE_FORMATS, open_source
from featurestore.sources.text import LINE_ID, TextSource

__all__ = [
    "ConllSource",
    "FORMATS",
    "ImageSource",
    "LINE_ID",
    "SOURCE_FORMATS",
    "Source",
    "SourceBatch",
    "TextSource",
    "bytes_hash",
    "content_hash",
    "from_dict",
    "iob1_to_bio",
    "normalize_text",
    "open_source",
    "to_dict",
]
