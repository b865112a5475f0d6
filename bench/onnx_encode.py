"""MiniLM sentence vectors through the ONNX Runtime backend vs bare ``SentenceTransformer.encode``.

Data: the distinct SMS texts of the SMSSpamCollection (4,187; ``--texts N`` for a slice). All
sides encode the same texts in one process, alternating rounds (A B A B ...):

- ``onnx``: ``get_encoder("minilm", backend="onnx", batch_size=64).encode`` (the project's encoder:
  tokenizers, onnxruntime, numpy pooling, batches of at most 64 texts and 512 padded pieces, longest
  first; the export made, or loaded from the cache, before timing);
- ``int8``: the same through ``minilm-int8`` (its quantized export); its mean cosine to ``onnx``'s
  vectors is reported beside;
- ``torch``: ``SentenceTransformer(...).encode(batch_size=64, normalize_embeddings=True)``;
- ``gemm`` (the fp32 ceiling): numpy matmuls of the model's per-token shapes for every token of
  the texts (per layer 4 x hidden x hidden and 2 x hidden x intermediate multiply-adds, read from
  the model's ``config.json``; MiniLM: 6 x (4 x 384x384 + 2 x 384x1536)), in chunks of 2,048
  token rows, with the same threads (``threadpoolctl``). Attention scores, softmax, LayerNorm,
  GELU and padding are left out (the ceiling does less work than the model); ``fraction_of_gemm_ceiling`` is
  the ceiling's time over the ONNX side's (tokens/s over the ceiling's tokens/s).

Threads: the same count on every side (``--threads``, default the cores this process may use):
torch's ``set_num_threads``, onnxruntime's ``intra_op_num_threads`` and numpy's BLAS threads. Wall and CPU seconds
per round; the ratio is torch's min wall time over ONNX's. The vectors are compared too.
"""

from __future__ import annotations

import argparse
import json
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
    int8 = get_encoder("minilm-int8", batch_size=64)
    int8.load()
    bare = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    tokens = sum(len(row) for row in ours._onnx().tokenizer.ids(texts))
    config = json.loads((minilm_path() / "config.json").read_text())
    gemm = _gemm_side(tokens, int(config["hidden_size"]), int(config["intermediate_size"]), int(config["num_hidden_layers"]), args.threads)
    sides = {
        "onnx": lambda: ours.encode(texts),
        "int8": lambda: int8.encode(texts),
        "gemm": gemm,
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
    del vectors["gemm"]
    int8_cos = (vectors.pop("int8") * vectors["onnx"]).sum(axis=1)
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
        "tokens": tokens,
        "onnx_tokens_per_s": round(tokens / results["onnx"]["wall_s_min"], 1),
        "gemm_gflop_per_s": round(gemm.flop / results["gemm"]["wall_s_min"] / 1e9, 1),
        "fraction_of_gemm_ceiling_wall": round(results["gemm"]["wall_s_min"] / results["onnx"]["wall_s_min"], 3),
        "fraction_of_gemm_ceiling_cpu": round(results["gemm"]["cpu_s_min"] / results["onnx"]["cpu_s_min"], 3),
        "max_abs_cos_minus_1": float(np.abs(cos - 1).max()),
        "ratio_onnx_over_int8_wall": round(results["onnx"]["wall_s_min"] / results["int8"]["wall_s_min"], 2),
        "ratio_onnx_over_int8_cpu": round(results["onnx"]["cpu_s_min"] / results["int8"]["cpu_s_min"], 2),
        "int8_mean_cos_to_onnx": round(float(int8_cos.mean()), 5),
        "int8_min_cos_to_onnx": round(float(int8_cos.min()), 4),
    })


def _gemm_side(tokens: int, hidden: int, intermediate: int, layers: int, threads: int):
    """A callable doing the model's per-token fp32 multiply-adds for ``tokens`` rows with numpy
    (its BLAS limited to ``threads``); its ``flop`` attribute is the work it does."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    chunk = 2048
    x = rng.standard_normal((chunk, hidden), dtype=np.float32)
    h = rng.standard_normal((chunk, intermediate), dtype=np.float32)
    square = rng.standard_normal((hidden, hidden), dtype=np.float32)
    up = rng.standard_normal((hidden, intermediate), dtype=np.float32)
    down = rng.standard_normal((intermediate, hidden), dtype=np.float32)

    def run() -> None:
        with threadpool_limits(limits=threads, user_api="blas"):
            for start in range(0, tokens, chunk):
                rows = min(chunk, tokens - start)
                for _ in range(layers):
                    for _ in range(4):
                        x[:rows] @ square
                    x[:rows] @ up
                    h[:rows] @ down

    run.flop = 2 * tokens * layers * (4 * hidden * hidden + 2 * hidden * intermediate)  # type: ignore[attr-defined]
    return run


if __name__ == "__main__":
    main()
