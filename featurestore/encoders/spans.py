"""Character spans of words: where each given token sits in the text it came with.

Token-level encoders return ``(token, char_start, char_end)`` triples such that
``text[char_start:char_end] == token``. When the words come from the source (CoNLL sentences
are tokens joined by single spaces) the spans are found here, in one pass over the text.
"""

from __future__ import annotations

from typing import Sequence

from featurestore.errors import EncoderError

Span = tuple[str, int, int]


def align_tokens(text: str, tokens: Sequence[str], *, index: int = 0) -> list[Span]:
    """``(token, start, end)`` per token, in order, with ``text[start:end] == token``.

    The text must be the tokens in order separated (and optionally surrounded) by whitespace;
    ``index`` is the input's position in its batch, for the error message.
    """
    words = list(tokens)
    if text == " ".join(words):  # the usual case: offsets are running sums
        spans: list[Span] = []
        start = 0
        for word in words:
            spans.append((word, start, start + len(word)))
            start += len(word) + 1
        return spans
    spans = []
    pos = 0
    for j, word in enumerate(words):
        start = text.find(word, pos)
        if start < 0 or text[pos:start].strip():
            raise EncoderError(
                f"input {index}: token {j} ({word!r}) does not follow character {pos} of its text "
                f"{_excerpt(text)}; pass the text as the tokens joined by single spaces"
            )
        spans.append((word, start, start + len(word)))
        pos = start + len(word)
    if text[pos:].strip():
        raise EncoderError(
            f"input {index}: its text goes on after the last token (at character {pos}: {_excerpt(text[pos:])}); "
            "pass the text as the tokens joined by single spaces"
        )
    return spans


def _excerpt(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
