"""Prefect's overhead on materialize: the flow vs the same library calls without Prefect (runner inline).

Input: the SMSSpamCollection repeated to ``--rows`` lines (sms layout, ``--id-col @line``), each
run into an empty store. Encoder: minilm (CPU), the default encoder and the one a 20,000-row run
uses in practice: ~4,200 forward passes, about a minute on 2 cores. Prefect's cost is fixed per
flow run (~1 s: Prefect 3.8 joins the flow's heartbeat thread, which sleeps in 1 s steps) plus
~tens of ms per task, so it is a share of the work only for real work: ``--encoder word2vec``
does the same 20,000 rows in ~0.5 s, where that fixed second is most of the flow's time.

Measured in the same run:

- warm (the target): in this process, with the encoder loaded and the ephemeral Prefect server
  already started, ``flows.runner.run(runner="local")`` (plan, then the flow: tasks, state
  tracking, artifact) vs ``run(runner="inline")`` (plan, encode, commit), alternated
  ``--repeats`` times, medians compared;
- server start: the first flow run of this process minus the second (a flow that does nothing);
  a scheduled deployment or ``PREFECT_API_URL`` to a running server does not pay it per run;
- end to end: ``featurestore materialize --runner local`` vs ``--runner inline``, each a fresh
  process (imports, server start and weights loading included).

Target: warm overhead = flow / inline - 1 <= 10%. The end-to-end overhead is reported beside it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import cli, emit, last_json, log, timed_run, write_sms_input


def seconds_of(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def server_start_seconds() -> float:
    """The first flow run of a process starts the ephemeral server; the second does not."""
    from prefect import flow

    @flow(name="bench-noop", persist_result=False)
    def noop() -> None:
        return None

    first = seconds_of(noop)
    return first - seconds_of(noop)


def warm_runs(source_path: Path, encoder: str, tmp: Path, repeats: int) -> dict[str, list[float]]:
    """Alternate inline and flow runs into fresh stores; seconds of each."""
    from featurestore.sources import TextSource
    from flows.runner import run

    source = TextSource(str(source_path), format="sms", id_col="@line", keep=("label",))
    times: dict[str, list[float]] = {"inline": [], "local": []}
    for i in range(repeats):
        for runner in ("inline", "local"):
            started = time.perf_counter()
            run(source, "bench", encoder, store=str(tmp / f"{runner}-{i}"), runner=runner)
            times[runner].append(time.perf_counter() - started)
            log(f"[prefect_overhead] warm {runner} #{i + 1}: {times[runner][-1]:.2f} s")
    return times


def end_to_end(source: Path, encoder: str, store: Path, runner: str) -> dict[str, Any]:
    cmd = [cli(), "materialize", str(source), "--view", "bench", "--encoder", encoder, "--store", str(store), "--format", "sms",
           "--id-col", "@line", "--keep", "label", "--runner", runner, "--json"]
    seconds, out = timed_run(cmd)
    summary = last_json(out)
    return {"seconds": round(seconds, 2), "encoded": summary["encoded"], "shards": summary["shards"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--encoder", default="minilm", choices=("minilm", "word2vec"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a smoke run (500 rows, one repeat)")
    args = parser.parse_args()
    rows, repeats = (500, 1) if args.quick else (args.rows, args.repeats)
    from flows.prefect_env import apply_defaults

    apply_defaults()
    from featurestore.encoders import get_encoder

    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-prefect-"))
    try:
        source = tmp / "SMSSpamCollection"
        info = write_sms_input(rows, source)
        log(f"[prefect_overhead] {rows} rows ({info['distinct_texts']} distinct texts), {args.encoder}; end to end first")
        e2e = {runner: end_to_end(source, args.encoder, tmp / f"e2e-{runner}", runner) for runner in ("inline", "local")}
        get_encoder(args.encoder).load()  # both warm variants find the weights loaded
        server_s = server_start_seconds()
        log(f"[prefect_overhead] ephemeral server start: {server_s:.2f} s")
        times = warm_runs(source, args.encoder, tmp, repeats)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    inline_s, flow_s = statistics.median(times["inline"]), statistics.median(times["local"])
    overhead = flow_s / inline_s - 1
    emit(
        {
            "benchmark": "prefect_overhead",
            "quick": args.quick,
            "encoder": args.encoder,
            "rows": rows,
            "distinct_texts": info["distinct_texts"],
            "warm_seconds": {runner: [round(t, 3) for t in ts] for runner, ts in times.items()},
            "warm_inline_median_seconds": round(inline_s, 3),
            "warm_flow_median_seconds": round(flow_s, 3),
            "overhead": round(overhead, 4),
            "overhead_seconds": round(flow_s - inline_s, 3),
            "target_overhead": "<= 0.10 (warm: encoder loaded, server started)",
            "server_start_seconds": round(server_s, 2),
            "end_to_end": e2e,
            "overhead_end_to_end": round(e2e["local"]["seconds"] / e2e["inline"]["seconds"] - 1, 4),
            "shards": e2e["local"]["shards"],
            "pass": overhead <= 0.10 and e2e["local"]["encoded"] == e2e["inline"]["encoded"] == rows,
        }
    )


if __name__ == "__main__":
    main()
