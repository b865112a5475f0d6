"""Point-in-time joins of labels to stored feature rows: each label's row of a table's
history (the latest state, or with label times the newest row at or before the label's time,
a DuckDB ASOF JOIN), and the kept columns at the joined rows."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.store.latest import latest_mask, newest
from featurestore.store.schema import SYSTEM_COLUMNS

if TYPE_CHECKING:
    import pandas as pd


def join_rows(hist: pa.Table, frame: pd.DataFrame, token_view: bool) -> np.ndarray:
    """``(n_labels,) int64`` row of ``hist`` each label joins (-1: none)."""
    if "label_time" in frame.columns:
        return asof_rows(hist, frame)
    live = np.flatnonzero(latest_mask(hist, granularity="token" if token_view else "sentence").to_numpy(zero_copy_only=False)) if hist.num_rows else np.zeros(0, np.int64)
    keys = ["entity_id"] + (["token_index"] if token_view else [])
    index = hist.select(keys).take(pa.array(live)).to_pandas()
    index["row"] = live
    merged = frame[keys].merge(index, on=keys, how="left", validate="many_to_one")
    return merged["row"].fillna(-1).to_numpy(np.int64)


def asof_rows(hist: pa.Table, frame: pd.DataFrame) -> np.ndarray:
    """The newest row per label whose event time is at or before the label's time (tombstones: -1).

    Rows with the same entity and event time (a re-run that changed the content) resolve to
    the newest of them (:func:`featurestore.store.latest.newest`).
    """
    import duckdb

    ft = pc.coalesce(hist.column("event_timestamp"), hist.column("created_at"))
    rows = newest([hist.column("entity_id"), ft], hist.column("created_at"))
    feats = pa.table(
        {
            "entity_id": hist.column("entity_id").take(rows),
            "ft": ft.take(rows),
            "deleted": pc.fill_null(hist.column("deleted"), False).take(rows),
            "row": pa.array(rows),
        }
    )
    labels = pa.table(
        {
            "pos": pa.array(np.arange(len(frame), dtype=np.int64)),
            "entity_id": pa.array(frame["entity_id"].tolist(), pa.string()),
            "ts": pa.array(frame["label_time"]),
        }
    )
    con = duckdb.connect()
    try:
        con.register("feats", feats)
        con.register("labels", labels)
        result = con.sql(
            """
            SELECT CASE WHEN f.deleted THEN -1 ELSE coalesce(f.row, -1) END AS row
            FROM labels l ASOF LEFT JOIN feats f ON l.entity_id = f.entity_id AND l.ts >= f.ft
            ORDER BY l.pos
            """
        ).to_arrow_table()
    finally:
        con.close()
    return result.column("row").to_numpy().astype(np.int64)


def take(column: pa.ChunkedArray, rows: np.ndarray) -> pa.ChunkedArray:
    """Values at ``rows`` (-1 gives null)."""
    return column.take(pa.array(rows, mask=rows < 0))


def kept_columns(primary: pa.Table, rows: np.ndarray, frame: pd.DataFrame) -> pd.DataFrame:
    """The view's kept columns at the joined rows, then extra columns the labels brought."""
    import pandas as pd

    kept = [c for c in primary.column_names if c not in SYSTEM_COLUMNS]
    columns = primary.select(kept).take(pa.array(rows)).to_pandas() if kept else pd.DataFrame(index=range(len(rows)))
    for name in frame.columns:
        if name not in ("entity_id", "label", "token_index") and name not in columns.columns:
            columns[name] = frame[name].to_numpy()
    return columns
