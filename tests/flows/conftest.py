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


def read_artifact(key: str) -> str:
    """The newest artifact with this key, read over the server's REST API.

    (Prefect 3.8's client sends null filters that this server version rejects, so the body is
    spelled out in full.)
    """
    from prefect.client.orchestration import get_client

    body = {"artifacts": {"key": {"any_": [key]}}, "limit": 1, "offset": 0, "sort": "CREATED_DESC"}
    with get_client(sync_client=True) as client:
        response = client.request("POST", "/artifacts/filter", json=body)
    artifacts = response.json()
    assert artifacts, f"no artifact {key}"
    return artifacts[0]["data"]
