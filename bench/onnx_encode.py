"""MiniLM sentence vectors through the ONNX Runtime backend vs bare ``SentenceTransformer.encode``.

Data: the distinct SMS texts of the SMSSpamCollection (4,187; ``--texts N`` for a slice). Both
sides encode the same texts in one process with batches of 64, alternating rounds (A B A B ...):

- ``onnx``: ``get_encoder("minilm", backend="onnx").encode`` (the project's encoder: tokenizers,
  onnxruntime, numpy pooling; the export made, or loaded from the cache, before timing);
- ``torch``: ``SentenceTransformer(...).encode(batch_size=64, normalize_embeddings=True)``.

Threads: the same count on both sides (``--threads``, default the cores this process may use):
torch's ``set_num_threads`` and onnxruntime's ``intra_op_num_threads``. Wall and CPU seconds
per round; the ratio is torch's min wall time over ONNX's. The vectors are compared too.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import emit, log, sms_path, wall_cpu_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=0, help="the first N distinct texts (default: all)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--quick", action="store_true", help="1,000 texts, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.rounds = 1000, 2
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # onnx_backend.threads() caps at it
    seen: dict[str, None] = {}
    for line in sms_path().read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            seen.setdefault(line.split("\t", 1)[1], None)
    texts = list(seen)[: args.texts or None]

    import torch
    from sentence_transformers import SentenceTransformer

    from featurestore.encoders import get_encoder
    from featurestore.encoders.sentence import minilm_path

    torch.set_num_threads(args.threads)
    ours = get_encoder("minilm", backend="onnx", batch_size=64)
    ours.load()
    bare = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    sides = {
        "onnx": lambda: ours.encode(texts),
        "torch": lambda: bare.encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    vectors = {}
    for round_ in range(args.rounds):
        for name, fn in sides.items():
            cpu, wall = time.process_time(), time.perf_counter()
            vectors[name] = fn()
            runs[name].append((time.perf_counter() - wall, time.process_time() - cpu))
        log(f"[onnx_encode] round {round_ + 1}: " + ", ".join(f"{n} {r[-1][0]:.1f} s" for n, r in runs.items()))
    a, b = vectors["onnx"], vectors["torch"]
    cos = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    results = {
        name: {**wall_cpu_summary(r, 2), "texts_per_s": round(len(texts) / min(w for w, _ in r), 1)}
        for name, r in runs.items()
    }
    emit({
        "benchmark": "onnx_encode",
        "texts": len(texts),
        "rounds": args.rounds,
        "threads": args.threads,
        "results": results,
        "ratio_torch_over_onnx_wall": round(results["torch"]["wall_s_min"] / results["onnx"]["wall_s_min"], 2),
        "ratio_torch_over_onnx_cpu": round(results["torch"]["cpu_s_min"] / results["onnx"]["cpu_s_min"], 2),
        "max_abs_cos_minus_1": float(np.abs(cos - 1).max()),
    })


if __name__ == "__main__":
    main()
