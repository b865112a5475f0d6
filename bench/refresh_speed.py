"""``featurestore refresh`` with nothing changed vs the full run that built the project.

Input: a project file (``featurestore.yaml``) with one source (the SMSSpamCollection repeated to
``--rows`` lines, sms layout), one view materialized with ``--encoder`` (minilm by default), its
FAISS index and a spam head, in an empty store. Each refresh is a fresh ``featurestore refresh
--config ... --json`` process (imports included), as a cron job or a scheduled deployment runs it:

- full: the first refresh (materialize, index build, head training, Prefect flows, artifact);
- nothing changed: the same command again, ``--repeats`` times (a scan of the source against the
  table, the index and head checks, no Prefect start, no forward pass); the median is compared.

Target: nothing changed / full <= 0.05.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from _common import cli, emit, last_json, log, timed_run, write_sms_input

PROJECT = """\
store: store
sources:
  - name: sms
    path: {source}
    format: sms
    id_col: "@line"
    keep: [label]
views:
  - name: sms
    source: sms
    encoders: [{encoder}]
    index: true
heads:
  - name: sms-spam
    task: spam
    view: sms
    encoder: {encoder}
"""


def refresh(config: Path) -> tuple[float, dict]:
    seconds, out = timed_run([cli(), "refresh", "--config", str(config), "--json"])
    return seconds, last_json(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 rows, 2 repeats")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeats = 2_000, 2
    with tempfile.TemporaryDirectory(prefix="bench-refresh-") as tmp:
        folder = Path(tmp)
        data = write_sms_input(args.rows, folder / "sms.txt")
        config = folder / "featurestore.yaml"
        config.write_text(PROJECT.format(source="sms.txt", encoder=args.encoder), encoding="utf-8")
        full_s, full = refresh(config)
        enc = full["views"][0]["encoders"][0]
        log(f"[refresh_speed] full: {full_s:.2f} s ({enc['encoded']} encoded, index {enc['index']['status']}, "
            f"head {full['views'][0]['heads'][0]['status']})")
        idle: list[float] = []
        for i in range(args.repeats):
            seconds, summary = refresh(config)
            if summary["changed"]:
                raise SystemExit(f"bench: refresh #{i + 2} changed something: {summary}")
            idle.append(seconds)
            log(f"[refresh_speed] nothing changed #{i + 1}: {seconds:.2f} s")
    median = statistics.median(idle)
    emit({
        "benchmark": "refresh_speed",
        "input": {**data, "encoder": args.encoder, "index": True, "heads": ["spam"]},
        "full_seconds": round(full_s, 2),
        "full_encoded": enc["encoded"],
        "nothing_changed_seconds": [round(s, 2) for s in idle],
        "nothing_changed_median_seconds": round(median, 2),
        "ratio": round(median / full_s, 4),
        "target": "nothing changed / full <= 0.05",
        "pass": median / full_s <= 0.05,
    })


if __name__ == "__main__":
    main()
