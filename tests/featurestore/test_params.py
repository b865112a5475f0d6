"""The numeric checks every entry point shares: one message template, no bools or NaN let through."""

from __future__ import annotations

import math
import re

import pytest

from featurestore import settings
from featurestore.errors import InvalidArgumentError, StoreError
from featurestore.params import fraction, non_negative_int, positive_int


@pytest.mark.parametrize("value", [0, -1, True, 2.0, "3", None])
def test_positive_int_refuses_what_is_not_an_int_of_at_least_one(value):
    with pytest.raises(InvalidArgumentError, match=re.escape(f"k must be a positive int. Got {value!r} instead.")):
        positive_int("k", value)


def test_a_refused_argument_is_also_a_value_error():
    with pytest.raises(ValueError, match=re.escape("k must be a positive int. Got 0 instead.")):
        positive_int("k", 0)


def test_the_checks_return_the_value_they_accept():
    assert positive_int("k", 5) == 5
    assert non_negative_int("retention hours", 0) == 0
    assert fraction("share", 1) == 1.0 and fraction("share", 0) == 0.0


@pytest.mark.parametrize("value", [-0.1, 1.01, math.nan, math.inf, True, "0.5", None])
def test_fraction_refuses_what_is_not_a_number_in_0_1(value):
    with pytest.raises(InvalidArgumentError, match=re.escape(f"share must be a number in [0, 1], e.g. 0.5. Got {value!r} instead.")):
        fraction("share", value)


def test_fraction_without_zero():
    with pytest.raises(InvalidArgumentError, match=re.escape("recall must be a number in (0, 1], e.g. 0.95. Got 0 instead.")):
        fraction("recall", 0, allow_zero=False, example=0.95)


@pytest.mark.parametrize("value", [0, -1, True, 2.5])
def test_an_encoder_batch_size_below_one_is_refused_when_the_encoder_is_made(value):
    from featurestore.encoders import get_encoder

    with pytest.raises(InvalidArgumentError, match=re.escape(f"batch_size must be a positive int. Got {value!r} instead.")):
        get_encoder("minilm", batch_size=value, device="cpu")


@pytest.mark.parametrize("value", ["0", "-3", "nan", "inf", "soon"])
def test_the_index_training_bound_from_the_environment_must_be_a_positive_number(monkeypatch, value):
    monkeypatch.setenv("FEATURESTORE_INDEX_TRAIN_SECONDS", value)
    with pytest.raises(StoreError, match=re.escape(f"must be a positive number of seconds. Got {value!r} instead.")):
        settings.index_train_seconds()


def test_the_index_training_bound_defaults_and_explicit_wins(monkeypatch):
    monkeypatch.delenv("FEATURESTORE_INDEX_TRAIN_SECONDS", raising=False)
    assert settings.index_train_seconds() == settings.INDEX_TRAIN_SECONDS
    monkeypatch.setenv("FEATURESTORE_INDEX_TRAIN_SECONDS", "30")
    assert settings.index_train_seconds() == 30.0 and settings.index_train_seconds(5) == 5.0
