"""A library message as the command line prints it: each parameter the message names becomes its flag.

Library messages name parameters between backticks (see :mod:`featurestore.errors`):
`` `shard_size` `` is ``--shard-size``, `` `strict=True` `` is ``--strict`` and
`` `on_duplicate='last'` `` is ``--on-duplicate last``. A parameter whose flag is not its name
with dashes is listed in :data:`FLAGS`.
"""

from __future__ import annotations

import re

__all__ = ["FLAGS", "cli_message"]

# parameter -> flag, where the flag is not "--" + the name with dashes
FLAGS = {
    "n_splits": "--folds",
    "random_state": "--seed",
    "ids": "--id",
    "texts": "--text",
    "images": "--image",
    "vectors": "--vector-file",
    "input_file": "--input",
}
_PARAMETER = re.compile(r"`([a-z][a-z0-9_]*)(?:=([^`]*))?`")


def cli_message(message: str) -> str:
    """``message`` with each `` `parameter` `` or `` `parameter=value` `` written as the flag that sets it."""
    return _PARAMETER.sub(_flag, message)


def _flag(match: re.Match[str]) -> str:
    name, value = match.group(1), match.group(2)
    flag = FLAGS.get(name, "--" + name.replace("_", "-"))
    if value is None or value == "True":
        return flag
    return f"{flag} {value.strip(chr(39))}"
