"""A real Prefect server for the flow tests (temporary database), started once per session."""

from __future__ import annotations

import os

import pytest

from flows.prefect_env import apply_defaults


@pytest.fixture(scope="session")
def prefect_server():
    apply_defaults()
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
