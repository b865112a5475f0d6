"""One call from a path and a few options to the right source: text, CoNLL tokens or images."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from featurestore.errors import InvalidArgumentError
from featurestore.sources.formats import FORMATS as TEXT_FORMATS

SOURCE_FORMATS: tuple[str, ...] = (*TEXT_FORMATS, "conll", "images")
_CONLL_NAME = re.compile(r"(^eng\.(train|testa|testb)$)|\.(conll|conllu|bio|iob)$", re.IGNORECASE)


def source_format(path: str | Path, explicit: str | None = None) -> str:
    """The format the user named, else ``images`` for a folder, ``conll`` for CoNLL file names, else by suffix."""
    if explicit:
        fmt = explicit.lower()
        if fmt not in SOURCE_FORMATS:
            raise InvalidArgumentError(f"unknown format {explicit!r}; choose one of: {', '.join(SOURCE_FORMATS)}")
        return fmt
    p = Path(path)
    if p.is_dir():
        return "images"
    if _CONLL_NAME.search(p.name):
        return "conll"
    from featurestore.sources.formats import detect_format

    return detect_format(p)


def open_source(
    path: str | Path,
    *,
    format: str | None = None,
    id_col: str | None = None,
    text_col: str = "text",
    time_col: str | None = None,
    keep: tuple[str, ...] | None = None,
    header: bool = True,
    path_col: str = "path",
) -> Any:
    """The source for ``path``: a TextSource, a ConllSource (one entity per sentence) or an ImageSource."""
    fmt = source_format(path, format)
    if fmt == "conll":
        from featurestore.sources.conll import ConllSource

        return ConllSource(str(path), **({"keep": tuple(keep)} if keep else {}))
    if fmt == "images":
        from featurestore.sources.images import ImageSource

        return ImageSource(str(path), id_col=id_col, keep=tuple(keep or ()), path_col=path_col)
    from featurestore.sources.formats import ID_FORMATS
    from featurestore.sources.text import TextSource

    if fmt in ID_FORMATS and id_col is None:
        id_col = "id"  # a document's own id (Cranfield's .I number, BEIR's _id), not a content hash
    return TextSource(str(path), format=fmt, id_col=id_col, text_col=text_col, time_col=time_col, keep=tuple(keep or ()), header=header)
