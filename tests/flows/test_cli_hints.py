"""A user one flag away gets the flag: one line, exit 2, the store unchanged."""

from __future__ import annotations

import pytest

from tests.conftest import GLOVE, assert_user_error, need, snapshot

GLOVE_W2V = GLOVE / "glove.6B.50d.top5k.w2v.txt"


def unchanged(cli, store, *args: object, message: str) -> None:
    before = snapshot(store)
    assert_user_error(cli(*args), message)
    assert snapshot(store) == before


def test_an_sms_layout_file_named_as_text_names_the_format(built, cli, tmp_path, sms_lines):  # noqa: F811
    messages = tmp_path / "messages.txt"
    messages.write_text("\n".join(sms_lines[:30]) + "\n", encoding="utf-8")
    unchanged(cli, built["store"], "materialize", messages, "--view", "sms", "--encoder", "word2vec", "--store", built["store"],
              message=f"{messages} looks like the SMS layout (label<TAB>text): use --format sms")


def test_a_plain_text_file_is_still_read_as_text(cli, tmp_path, word2vec):
    lines = tmp_path / "lines.txt"
    lines.write_text("the first line\nanother\tline with a tab\nand a third one\n", encoding="utf-8")
    code, _, err = cli("materialize", lines, "--view", "lines", "--encoder", "word2vec", "--store", tmp_path / "s", "--runner", "inline")
    assert code == 0, err


@pytest.mark.parametrize(("args", "message"), [
    (["search", "--view", "smss", "--id", "3"], "view 'smss' does not exist in {store}; views: sms (did you mean 'sms'?)"),
    (["compact", "--view", "sm"], "(did you mean 'sms'?)"),
    (["search", "--view", "sms", "--encoder", "word2vc", "--id", "3"], "has no table for encoder 'word2vc'; it has: word2vec-"),
    (["predict", "spma", "hello"], "no model 'spma' in {store}; models: spam (did you mean 'spam'?)"),
    (["evaluate", "spm"], "(did you mean 'spam'?)"),
], ids=["view", "view-compact", "encoder", "model-predict", "model-evaluate"])
def test_a_misspelt_name_gets_the_close_one(built, cli, args, message):  # noqa: F811
    store = built["store"]
    unchanged(cli, store, *args, "--store", store, message=message.format(store=store))


def test_a_view_with_several_encoders_names_them_and_the_flag(cli, tmp_path, sms_file, word2vec):
    need(GLOVE_W2V)
    store = tmp_path / "store"
    source = sms_file(20)
    for encoder in ("word2vec", f"w2v:{GLOVE_W2V}"):
        code, _, err = cli("materialize", source, "--view", "sms", "--encoder", encoder, "--store", store, "--id-col", "@line", "--runner", "inline")
        assert code == 0, err
    for args in (["search", "--view", "sms", "--id", "1"], ["index", "build", "--view", "sms"], ["export", "--view", "sms", "--out", tmp_path / "x"]):
        before = snapshot(store)
        code, out, err = cli(*args, "--store", store)
        assert_user_error((code, out, err), "view 'sms' has several encoders: w2v (w2v-")
        assert ", word2vec (word2vec-" in err and err.rstrip().endswith("choose one with --encoder (its name or id)")
        assert snapshot(store) == before and not (tmp_path / "x").exists()
