"""The newest-row rule: the greatest ``created_at``, the later row on equal ones, for every reader."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from featurestore.store import Store
from featurestore.store.latest import latest_mask, newest_rows
from featurestore.store.schema import TIMESTAMP
from featurestore.training.joins import asof_rows as _asof_rows
from tests.featurestore.store.test_table import DIM, meta, rows

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def history(ids, minutes, *, deleted=None, token_index=None) -> pa.Table:
    times = [T0 + timedelta(minutes=m) for m in minutes]
    columns = {
        "entity_id": pa.array(ids, pa.string()),
        "event_timestamp": pa.array(times, TIMESTAMP),
        "created_at": pa.array(times, TIMESTAMP),
        "deleted": pa.array(deleted or [False] * len(ids)),
    }
    if token_index is not None:
        columns["token_index"] = pa.array(token_index, pa.int32())
    return pa.table(columns)


def test_equal_timestamps_resolve_to_the_later_row_in_every_reader():
    hist = history(["a", "b", "a", "a"], [0, 0, 5, 5])  # rows 2 and 3: two writes of "a" at one time
    assert newest_rows(hist).tolist() == [1, 3]
    assert np.flatnonzero(np.asarray(latest_mask(hist, granularity="sentence"))).tolist() == [1, 3]
    labels = pd.DataFrame({"entity_id": ["a", "b"], "label_time": [T0 + timedelta(minutes=9)] * 2})
    assert _asof_rows(hist, labels).tolist() == [3, 1]


def test_a_tombstone_at_the_same_time_as_a_write_wins_when_it_comes_later():
    hist = history(["a", "a", "b", "b"], [0, 0, 0, 0], deleted=[False, True, True, False])
    assert np.asarray(latest_mask(hist, granularity="sentence")).tolist() == [False, False, False, True]
    labels = pd.DataFrame({"entity_id": ["a", "b"], "label_time": [T0] * 2})
    assert _asof_rows(hist, labels).tolist() == [-1, 3]


def test_a_token_entity_keeps_every_row_of_its_newest_write():
    hist = history(["s", "s", "s", "s", "s", "u"], [0, 0, 0, 5, 5, 0], token_index=[0, 1, 2, 0, 1, 0])
    assert np.asarray(latest_mask(hist, granularity="token")).tolist() == [False, False, False, True, True, True]
    assert newest_rows(hist).tolist() == [4, 5]


def test_a_table_read_from_its_snapshot_and_from_delta_agree_on_a_tie(tmp_path):
    table = Store(tmp_path).table("v", "test-0000000000")
    first, second = rows(["a", "b"], np.zeros((2, DIM), np.float32)), rows(["a"], np.ones((1, DIM), np.float32))
    second = second.set_column(second.schema.get_field_index("created_at"), "created_at", first.column("created_at").slice(0, 1))
    table.append(first, meta())
    table.append(second, meta())
    snapshot, delta = table.latest(), table.latest(as_of=1)
    assert sorted(snapshot.ids.tolist()) == ["a", "b"]  # one row per entity, not both writes of "a"
    assert snapshot.ids.tolist() == delta.ids.tolist()
    np.testing.assert_array_equal(snapshot.vectors, delta.vectors)
