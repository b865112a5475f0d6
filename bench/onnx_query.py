"""One short text query, warm: the ONNX Runtime backend's ``encode([text])`` vs a bare
``session.run`` of the same inputs.

Both sides use one onnxruntime session of MiniLM's cached export (the encoder's own), so the
difference is what the encoder adds around the graph: tokenizing, building the feeds, pooling and
normalising. The bare side runs prepared feeds (ids and mask built once, outside the timing).
Rounds alternate (A B A B ...), each ``--calls`` calls of one side; per round the median
milliseconds per call, wall and CPU. Run with 1 intra-op thread (what the service uses, its
``--threads`` default) and with all the cores this process may use (``os.sched_getaffinity``):
the ``threads`` objects say which is faster for one query. The ratio is ours over bare (<= 1.2x
is the target).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from _common import emit, log

TEXT = "Are you free for lunch tomorrow? Call me when you can"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300, help="calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100 calls, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.rounds = 100, 2
    from featurestore.encoders import get_encoder, onnx_backend, onnx_text

    encoder = get_encoder("minilm", backend="onnx")
    encoder.load()
    cores = len(os.sched_getaffinity(0))
    plan = encoder._onnx().plan
    model_bytes = (onnx_backend.cache_folder("minilm", encoder.spec["weights"], plan) / onnx_backend.MODEL_FILE).read_bytes()
    results = {}
    for threads in sorted({1, cores}):
        model = onnx_text.OnnxSentenceModel(plan, model_bytes, n_threads=threads)
        ids = model.tokenizer.ids([TEXT])[0]
        feeds = {"input_ids": np.array([ids], dtype=np.int64), "attention_mask": np.ones((1, len(ids)), dtype=np.int64)}
        sides = {
            "encode": lambda: model.encode([TEXT], normalize=True),
            "session_run": lambda: model.session.run(["token_embeddings"], feeds),
        }
        for fn in sides.values():  # warm
            for _ in range(10):
                fn()
        per: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        for round_ in range(args.rounds):
            for name, fn in sides.items():
                walls, cpus = [], []
                for _ in range(args.calls):
                    cpu, wall = time.process_time(), time.perf_counter()
                    fn()
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                per[name].append((statistics.median(walls) * 1e3, statistics.fmean(cpus) * 1e3))
            log(f"[onnx_query] {threads} thread(s), round {round_ + 1}: " + ", ".join(f"{n} {r[-1][0]:.2f} ms" for n, r in per.items()))
        summary = {
            name: {
                "wall_ms_median_min": round(min(w for w, _ in r), 3),
                "wall_ms_median_median": round(statistics.median(w for w, _ in r), 3),
                "cpu_ms_mean_min": round(min(c for _, c in r), 3),
                "cpu_ms_mean_median": round(statistics.median(c for _, c in r), 3),
            }
            for name, r in per.items()
        }
        results[f"threads_{threads}"] = {
            **summary,
            "ratio_encode_over_session_run_wall": round(summary["encode"]["wall_ms_median_min"] / summary["session_run"]["wall_ms_median_min"], 3),
            "ratio_encode_over_session_run_cpu": round(summary["encode"]["cpu_ms_mean_min"] / summary["session_run"]["cpu_ms_mean_min"], 3),
        }
    emit({"benchmark": "onnx_query", "text": TEXT, "pieces": len(ids), "calls_per_round": args.calls, "rounds": args.rounds, "cores": cores, "results": results})


if __name__ == "__main__":
    main()
