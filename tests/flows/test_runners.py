"""One check of ``runner`` for every entry that takes one: the same one-line message, exit code 2 on the command line."""

from __future__ import annotations

import pytest

from featurestore.errors import InvalidArgumentError
from featurestore.sources import TextSource
from tests.conftest import snapshot

ANY = "runner must be one of: local, inline, dask. Got 'bogus' instead."
LOCAL_OR_INLINE = "runner must be one of: local, inline. Got {!r} instead."


def test_a_bad_runner_is_one_line_and_exit_2_from_every_command(cli, tmp_path, sms_file):
    store, config = tmp_path / "store", tmp_path / "featurestore.yaml"  # refresh checks the runner before it reads the file
    commands = [
        (["materialize", sms_file(5), "--view", "sms", "--encoder", "word2vec", "--store", store, "--runner", "bogus"], ANY),
        (["train", "spam", "--view", "sms", "--store", store, "--runner", "bogus"], LOCAL_OR_INLINE.format("bogus")),
        (["train", "spam", "--view", "sms", "--store", store, "--runner", "dask"], LOCAL_OR_INLINE.format("dask")),
        (["refresh", "--config", config, "--runner", "bogus"], LOCAL_OR_INLINE.format("bogus")),
    ]
    for args, message in commands:
        assert cli(*args) == (2, "", f"featurestore: error: {message}\n"), args
    assert snapshot(store) == {} and not config.exists()


def test_a_bad_runner_raises_invalid_argument_from_every_library_entry(tmp_path, sms_file):
    from flows.refresh import refresh, run_refresh
    from flows.runner import in_flow, run
    from flows.train import train

    store, config = tmp_path / "store", tmp_path / "featurestore.yaml"
    source = TextSource(str(sms_file(5)), format="sms", id_col="@line")
    calls = [
        (lambda: run(source, "sms", "word2vec", store=str(store), runner="bogus"), ANY),
        (lambda: in_flow("bogus", lambda: None, lambda: None), ANY),
        (lambda: train("spam", "sms", store=str(store), runner="bogus"), LOCAL_OR_INLINE.format("bogus")),
        (lambda: refresh(config, runner="bogus"), LOCAL_OR_INLINE.format("bogus")),
        (lambda: run_refresh(config, runner="dask"), LOCAL_OR_INLINE.format("dask")),
    ]
    for call, message in calls:
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert str(caught.value) == message
    assert snapshot(store) == {}
