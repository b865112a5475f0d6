"""Shared fixtures: real data slices, real encoders (loaded once), store snapshots, the CLI."""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the weights-digest cache and the ONNX exports go to a folder of this session, not the user's
# home, removed when the process that made it ends (the xdist workers inherit it; ~270 MB of exports)
if "FEATURESTORE_CACHE_DIR" not in os.environ:
    os.environ["FEATURESTORE_CACHE_DIR"] = tempfile.mkdtemp(prefix="featurestore-cache-")
    atexit.register(shutil.rmtree, os.environ["FEATURESTORE_CACHE_DIR"], True)

from featurestore import settings  # noqa: E402

DATA = settings.data_dir()
SMS = DATA / "spam" / "SMSSpamCollection"
W2V = DATA / "wordvecs" / "word2vec_100d" / "word2vec-100d.bin"
GLOVE = DATA / "wordvecs" / "glove_50d_5k"


@pytest.fixture(autouse=True)
def _no_warm_handles_across_tests():
    """Each test starts with an empty per-process cache of search handles: two tests' stores can
    hold byte-identical index files and versions, which the handles' freshness check cannot tell apart."""
    yield
    if "featurestore.serving" in sys.modules:
        sys.modules["featurestore.serving"].clear_searchers()


def need(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"needs {path} (the shared evaluation data beside the project)")


@pytest.fixture(scope="session")
def sms_lines() -> list[str]:
    need(SMS)
    return SMS.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def sms_file(tmp_path, sms_lines):
    """Write the first ``n`` SMS lines to a file in tmp_path (SMSSpamCollection layout)."""

    def make(n: int = 200, name: str = "SMSSpamCollection", lines: list[str] | None = None) -> Path:
        path = tmp_path / name
        path.write_text("\n".join((lines if lines is not None else sms_lines)[:n]) + "\n", encoding="utf-8")
        return path

    return make


@pytest.fixture(scope="session")
def word2vec():
    need(W2V)
    from featurestore.encoders import get_encoder

    enc = get_encoder("word2vec")
    enc.vectors()  # load once for the session
    return enc


@pytest.fixture(scope="session")
def minilm():
    from featurestore.encoders import get_encoder

    enc = get_encoder("minilm", device="cpu")
    enc.model()
    return enc


def snapshot(root: Path) -> dict[str, int]:
    """Every file under a store root with its size: equal snapshots mean an unchanged store."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from flows.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3 service (moto's server, in its own process as a real one would be)."""
    pytest.importorskip("moto", reason="the object-store tests need moto[server] (in the dev extra)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail("the local S3 service (moto) did not start")
            time.sleep(0.2)
    yield endpoint
    server.terminate()
    server.wait(timeout=30)


S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


@pytest.fixture
def s3_store(s3_endpoint, monkeypatch, tmp_path):
    """A fresh bucket on the local S3 service, the environment that reaches it (as a user sets
    it: AWS_* variables), a work folder in tmp_path; returns the store root URL."""
    import boto3

    env = {**S3_ENV, "AWS_ENDPOINT_URL": s3_endpoint, "FEATURESTORE_WORK_DIR": str(tmp_path / "work"),
           # a warm handle looks for a newer generation on every query (1 s by default on a bucket): the
           # tests publish and query within a second; the interval itself is tested in test_serving
           "FEATURESTORE_SEARCH_CHECK_SECONDS": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bucket = f"fs-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=bucket)
    return f"s3://{bucket}/store"


def bucket_keys(root: str) -> list[str]:
    """Every object key under a remote store root (s3://bucket/prefix)."""
    import boto3

    bucket, _, prefix = root.removeprefix("s3://").partition("/")
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def assert_user_error(result, message: str) -> None:
    """A user error: exit 2, one line on stderr that holds ``message``, no traceback."""
    code, out, err = result
    assert code == 2, (code, out, err)
    assert message in err, err
    assert err.count("\n") == 1 and err.startswith("featurestore: error: "), err
    assert "Traceback" not in err + out


def run_main(*args: object) -> tuple[int, str, str]:
    """The CLI in this process, its output captured without capsys (for module-scoped fixtures): (exit code, stdout, stderr)."""
    from flows.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()
