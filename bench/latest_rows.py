"""Each entity's newest row of a table's history: ``featurestore.store.latest`` vs DuckDB's window function.

Data: ``--entities`` ids written ``--writes`` times (every write rewrites every entity, so the
history has entities x writes rows), two writes sharing one ``created_at`` so the tie rule is
exercised. Both sides pick each entity's newest row (the greatest ``created_at``, the later row
on a tie) from the same Arrow table: the project with :func:`newest_rows`, the baseline with
DuckDB ``QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY created_at DESC, row DESC) = 1``
over the table registered in an in-memory connection. Their row sets are checked equal, then
``--rounds`` alternating rounds (A B A B ...); min and median of wall and CPU seconds per side,
and the ratio of the medians (baseline / project, above 1: the project is faster).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from _common import emit, log, wall_cpu_summary
from featurestore.store.latest import newest_rows

QUERY = """
SELECT row FROM history
QUALIFY row_number() OVER (PARTITION BY entity_id ORDER BY created_at DESC, row DESC) = 1
ORDER BY row
"""


def history(entities: int, writes: int) -> pa.Table:
    ids = pa.array([f"e{i:08d}" for i in range(entities)], pa.string())
    times = np.repeat(np.minimum(np.arange(writes), writes - 2), entities).astype("datetime64[s]").astype("datetime64[us]")
    return pa.table({
        "entity_id": pa.chunked_array([ids] * writes),
        "created_at": pa.array(times, pa.timestamp("us", tz="UTC")),
        "row": pa.array(np.arange(entities * writes, dtype=np.int64)),
    })


def with_duckdb(table: pa.Table) -> np.ndarray:
    import duckdb

    con = duckdb.connect()
    try:
        con.register("history", table)
        return con.sql(QUERY).to_arrow_table().column("row").to_numpy()
    finally:
        con.close()


def timed(fn, table: pa.Table) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn(table)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200_000, help="distinct entity ids")
    parser.add_argument("--writes", type=int, default=5, help="writes of every entity (the last two share a time)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (at least 2)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (2,000 entities, 2 rounds)")
    args = parser.parse_args()
    entities, rounds = (2_000, 2) if args.quick else (args.entities, max(args.rounds, 2))
    table = history(entities, args.writes)
    if not np.array_equal(newest_rows(table), with_duckdb(table)):
        raise SystemExit("bench: the two sides picked other rows")
    sides = {"project": newest_rows, "duckdb": with_duckdb}
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for r in range(rounds):
        for name, fn in sides.items():
            runs[name].append(timed(fn, table))
        log(f"round {r + 1}: " + ", ".join(f"{name} {runs[name][-1][0]:.3f} s" for name in sides))
    project, duckdb = wall_cpu_summary(runs["project"]), wall_cpu_summary(runs["duckdb"])
    emit({
        "benchmark": "latest_rows",
        "rows": table.num_rows,
        "entities": entities,
        "writes": args.writes,
        "rounds": rounds,
        "quick": args.quick,
        "project": project,
        "duckdb": duckdb,
        "ratio_duckdb_over_project_wall_median": round(duckdb["wall_s_median"] / project["wall_s_median"], 2),
        "ratio_duckdb_over_project_cpu_median": round(duckdb["cpu_s_median"] / project["cpu_s_median"], 2),
    })


if __name__ == "__main__":
    main()
