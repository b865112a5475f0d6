"""Shared fixtures: real data slices, real encoders (loaded once), store snapshots, the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from featurestore import settings  # noqa: E402

DATA = settings.data_dir()
SMS = DATA / "spam" / "SMSSpamCollection"
W2V = DATA / "wordvecs" / "word2vec_100d" / "word2vec-100d.bin"
GLOVE = DATA / "wordvecs" / "glove_50d_5k"


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
