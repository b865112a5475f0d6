"""The command line prints a library message with each parameter it names as the flag that sets it."""

from __future__ import annotations

import pytest

from flows.cli.messages import cli_message


@pytest.mark.parametrize(
    ("library", "printed"),
    [
        ("shard size (`shard_size`) must be a positive int. Got 0 instead.", "shard size (--shard-size) must be a positive int. Got 0 instead."),
        ("in.jsonl: line 2: bad (`strict=True` makes this fatal)", "in.jsonl: line 2: bad (--strict makes this fatal)"),
        ("make ids unique or pass `on_duplicate='last'`", "make ids unique or pass --on-duplicate last"),
        ("`n_splits` must be a whole number of at least 2", "--folds must be a whole number of at least 2"),
        ("query it with `vectors` or `ids`", "query it with --vector-file or --id"),
        ("Pass `memory_budget='120KB'` or more.", "Pass --memory-budget 120KB or more."),
        ("write one with `featurestore init`", "write one with `featurestore init`"),  # a command, not a parameter
        ("no parameter here: --already a flag", "no parameter here: --already a flag"),
    ],
)
def test_parameters_become_flags(library, printed):
    assert cli_message(library) == printed


def test_the_cli_prints_the_flag_of_a_library_refusal(cli, tmp_path):
    """materialize refuses shard_size=0 in the library; the CLI names --shard-size, exits 2, writes nothing."""
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,hello\n", encoding="utf-8")
    code, out, err = cli("materialize", source, "--view", "v", "--encoder", "word2vec", "--store", tmp_path / "s",
                         "--id-col", "id", "--shard-size", "0", "--runner", "inline")
    assert code == 2 and "Traceback" not in err + out
    assert err == "featurestore: error: shard size (--shard-size) must be a positive int. Got 0 instead.\n"
    assert not (tmp_path / "s").exists()
