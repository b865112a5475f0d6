"""Checks of numeric parameters, one message template for all of them.

The library checks its own numbers (``k``, ``shard_size``, ``rebuild_share`` ...) so that the
command line, the Python API, the flows and an HTTP service refuse the same values with the
same one-line message: "k must be a positive int. Got 0 instead." The command line declares
plain ``int``/``float`` options and leaves the range to these checks, so a bad value is a
``featurestore: error:`` line with exit code 2, never a usage box.
"""

from __future__ import annotations

import math

from featurestore.errors import InvalidArgumentError


def positive_int(name: str, value: object) -> int:
    """``value`` when it is an int >= 1 (a bool is not), else :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"{name} must be a positive int. Got {value!r} instead.")
    return value


def non_negative_int(name: str, value: object) -> int:
    """``value`` when it is an int >= 0 (a bool is not), else :class:`InvalidArgumentError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{name} must be an int >= 0. Got {value!r} instead.")
    return value


def fraction(
    name: str,
    value: object,
    *,
    allow_zero: bool = True,
    example: float = 0.5,
) -> float:
    """``value`` as a float when it is a number in [0, 1] (or (0, 1] without ``allow_zero``);
    NaN, infinities, bools and strings are refused with :class:`InvalidArgumentError` naming ``name``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (0 <= value <= 1 if allow_zero else 0 < value <= 1):  # type: ignore[operator]
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise InvalidArgumentError(f"{name} must be a number in {interval}, e.g. {example}. Got {value!r} instead.")
    return float(value)  # type: ignore[arg-type]
