"""Quiet, offline defaults for Prefect, applied by the command line before Prefect is imported.

Explicit environment settings win: each default is only set when the variable is unset. Which
Prefect API server a command uses, and how it starts, is :mod:`flows.prefect_api`.
"""

from __future__ import annotations

import os

STARTUP_TIMEOUT = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
DEFAULTS = {
    # No telemetry calls from a machine that may have no network.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # Flow and task state lines are noise on a command line; warnings and errors still show.
    "PREFECT_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_TO_API_ENABLED": "false",
    # Seconds to wait for the per-process API server (flows.prefect_api). Prefect's 20 is not
    # enough on a loaded machine (two busy cores: ~40 s); a server that exits is noticed at once.
    STARTUP_TIMEOUT: "180",
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


def startup_timeout_s() -> float:
    """The start-up deadline of the API server: the user's setting (environment or profile), else ours.

    Read through Prefect's settings, so it also holds for a Python caller that imported Prefect
    before :func:`apply_defaults` could set the variable.
    """
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral
    if "startup_timeout_seconds" in ephemeral.model_fields_set:
        return float(ephemeral.startup_timeout_seconds)
    return float(DEFAULTS[STARTUP_TIMEOUT])
