"""The index chooser never names an index the rows cannot train, a budget no index fits is one
error with the smallest that works, and training is bounded in time (real FAISS, real sizes)."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from featurestore.errors import InvalidArgumentError, StoreError
from featurestore.index import VectorIndex, choose_factory, parse_bytes
from featurestore.index.choice import (
    MIN_PER_CENTROID,
    PQ_GOOD_ROWS,
    PQ_MIN_ROWS,
    format_bytes,
    index_bytes,
    nlist_for,
)
from tests.featurestore.index.test_index import clustered


def ids(n: int) -> np.ndarray:
    return np.array([f"e{i}" for i in range(n)], dtype=object)


def trainable(factory: str, n: int) -> bool:
    """What FAISS needs to train ``factory`` on ``n`` vectors without a warning."""
    match = re.match(r"IVF(\d+)", factory)
    if match and int(match.group(1)) * MIN_PER_CENTROID > n and int(match.group(1)) > 1:
        return False
    return "PQ" not in factory or n >= PQ_GOOD_ROWS


@pytest.mark.parametrize("n", [1, 39, 300, 1_000, 9_983, 9_984, 19_999, 20_000, 60_000, 1_000_000])
@pytest.mark.parametrize("budget", [None, "100KB", "1MB", "8MB", "64MB", "512MB", "4GB"])
def test_auto_never_picks_an_index_it_cannot_train_or_that_overflows_the_budget(n, budget):
    limit = parse_bytes(budget)
    try:
        factory = choose_factory(n, 384, memory_budget=limit)
    except StoreError as exc:
        [need] = re.findall(r"Pass `memory_budget='(\S+)'` or more", str(exc))
        assert limit is not None and parse_bytes(need) > limit
        assert choose_factory(n, 384, memory_budget=parse_bytes(need))  # the budget it names works
        return
    assert trainable(factory, n), factory
    kind = "flat" if factory == "Flat" else "ivfpq" if "PQ" in factory else "ivf"
    assert limit is None or index_bytes(n, 384, kind) <= limit


def test_the_issue_case_300_rows_under_100kb_is_one_error_naming_the_smallest_budget():
    with pytest.raises(StoreError) as caught:
        choose_factory(300, 384, memory_budget=parse_bytes("100KB"))
    assert str(caught.value) == (
        "memory budget 100KB is below what any index of 300 vectors of 384 dims needs: the smallest, Flat, "
        "takes 453KB. Pass `memory_budget='453KB'` or more."
    )
    assert choose_factory(300, 384, memory_budget=parse_bytes("453KB")) == "Flat"
    assert choose_factory(15_000, 384, memory_budget=parse_bytes("10MB")).endswith(",PQ64,Refine(SQ8)")  # enough rows to train a PQ


def test_explicit_types_must_fit_the_budget_and_be_trainable():
    with pytest.raises(StoreError, match=r"^memory budget 100KB is too small for a flat index of 300 vectors of 384 dims: it needs 453KB\."):
        choose_factory(300, 384, index_type="flat", memory_budget=parse_bytes("100KB"))
    with pytest.raises(StoreError, match=f"an ivfpq index needs at least {PQ_MIN_ROWS} vectors to train its codebooks; the view has 200"):
        choose_factory(200, 384, index_type="ivfpq")
    assert choose_factory(300, 384, index_type="ivf") == f"IVF{nlist_for(300)},Flat" == "IVF7,Flat"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0", "memory budget must be a positive size such as 2GB or 512MB. Got '0' instead."),
        ("0.4B", "memory budget must be a positive size"),
        ("1.5.3GB", "memory budget must look like 2GB, 512MB or a number of bytes. Got '1.5.3GB' instead."),
        ("-1GB", "memory budget must look like 2GB"),
        ("lots", "memory budget must look like 2GB"),
        (True, "memory budget must look like 2GB"),
    ],
)
def test_parse_bytes_refuses_what_is_not_a_positive_size(text, message):
    with pytest.raises(InvalidArgumentError, match=re.escape(message)):
        parse_bytes(text)


def test_format_bytes_round_trips_through_parse_bytes_upwards():
    for size in (1, 1023, 1024, 463_200, 5 * 1024**2 + 1, 463_000_000, 2 * 1024**3):
        shown = format_bytes(size)
        assert parse_bytes(shown) >= size and parse_bytes(shown) < size * 1.1 + 1024, (size, shown)


def test_an_ivfpq_on_300_rows_of_384_dims_trains_in_seconds_not_minutes():
    """The issue's IVF7,PQ64,Refine(SQ8) spent over 10 minutes in FAISS's polysemous training."""
    x = clustered(300, 384)
    started = time.perf_counter()
    built = VectorIndex.build(ids(300), x, view="v", encoder_id="t-1", metric="cosine", table_version=0, index_type="ivfpq")
    assert built.info.factory == "IVF7,PQ64,Refine(SQ8)"
    assert time.perf_counter() - started < 60
    assert built.info.params and built.info.recall_at_10 >= 0.9  # tuned over its 7 cells, not left untuned


def test_training_past_its_bound_stops_with_an_error_naming_the_bound(monkeypatch):
    x = clustered(2_000, 32)
    with pytest.raises(StoreError, match=r"^training the IVF51,Flat index on 2,000 vectors passed the bound of 1e-06 s "):
        VectorIndex.build(ids(2_000), x, view="v", encoder_id="t-1", metric="cosine", table_version=0, index_type="ivf", train_seconds=1e-6)
    monkeypatch.setenv("FEATURESTORE_INDEX_TRAIN_SECONDS", "soon")
    with pytest.raises(StoreError, match=r"FEATURESTORE_INDEX_TRAIN_SECONDS\) must be a positive number of seconds. Got 'soon' instead."):
        VectorIndex.build(ids(2_000), x, view="v", encoder_id="t-1", metric="cosine", table_version=0, index_type="ivf")
    monkeypatch.setenv("FEATURESTORE_INDEX_TRAIN_SECONDS", "120")
    built = VectorIndex.build(ids(2_000), x, view="v", encoder_id="t-1", metric="cosine", table_version=0, index_type="ivf")
    assert built.info.factory == "IVF51,Flat"  # the bound is lifted again after a stopped training
