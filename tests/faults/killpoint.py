"""Run the ``featurestore`` command line and kill it with SIGKILL at one chosen point.

``python killpoint.py PATTERN ARGS...`` runs ``featurestore ARGS...`` and SIGKILLs its own process
just before it renames a file or folder whose name matches PATTERN (fnmatch) into place: the
moment a writer has written its temporary files and not committed them. A kill from outside
cannot hit that moment reliably when the write takes milliseconds (a head, an index); this is the
same kill, at a point chosen by name. Nothing else changes: every rename goes through unchanged.
"""

from __future__ import annotations

import fnmatch
import os
import signal
import sys
from typing import Any, Callable


def die_before(pattern: str, rename: Callable[..., Any]) -> Callable[..., Any]:
    def renamed(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
        if fnmatch.fnmatch(os.path.basename(os.fspath(src)), pattern):
            os.kill(os.getpid(), signal.SIGKILL)
        return rename(src, dst, *args, **kwargs)

    return renamed


def main(argv: list[str]) -> None:
    pattern, *args = argv
    os.rename = die_before(pattern, os.rename)
    os.replace = die_before(pattern, os.replace)
    from flows.cli.main import main as featurestore

    featurestore(args)


if __name__ == "__main__":
    main(sys.argv[1:])
