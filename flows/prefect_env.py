"""Quiet, offline defaults for Prefect, applied by the command line before Prefect is imported.

Explicit environment settings win: each default is only set when the variable is unset.
"""

from __future__ import annotations

import os

DEFAULTS = {
    # No telemetry calls from a machine that may have no network.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Flow and task state lines are noise on a command line; warnings and errors still show.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # deltalake's object stores log each failed credential provider as a warning; the command
    # line reports the failure itself in one line.
    "RUST_LOG": "error",
}


def apply_defaults() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
