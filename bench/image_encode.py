"""``efficientnet-lite0`` images/s on the ants-vs-bees photos vs a bare efficientnet-lite-pytorch loop.

Input: the JPEGs of ``images/hymenoptera_train`` in the data folder (``--quick``: the first 64),
encoded whole (decode + forward) on the CPU. Variants, interleaved round by round so that load
from other processes hits them alike; the ratios use each variant's best of ``--repeats`` rounds
(the least disturbed on a shared machine; medians are reported too):

- bare: ``EfficientNet.from_name`` + ``load_state_dict``, contiguous memory, each batch decoded
  (same :func:`decode_image`) then run through ``extract_features`` + mean: the obvious loop;
- shipped: ``EfficientNetEncoder.encode`` as configured by default (BatchNorm folded,
  ONNX Runtime on CPU, decoding two batches ahead in a thread pool);
- torch: the same encoder with ``backend="torch"`` (channels_last); contiguous: torch with
  ``channels_last=False``;
- no_overlap: the shipped network, but each batch decoded (same pool) before its forward pass;
- decode_only / forward_only: the two halves alone, to show how much of the decoding the
  overlap hides: ``overlap_hidden = (decode_only + forward_only - shipped) / decode_only``;
- forward_torch: the torch network's forward pass alone over the same pixels; forward_ort_extended
  and forward_ort_1thread: the exported graph in sessions with ``ORT_ENABLE_EXTENDED`` (no
  layout transformation) instead of ``ORT_ENABLE_ALL``, and with one intra-op thread.

Target: ``bare / shipped >= 1.3`` (seconds ratio, best rounds). CPU seconds of this process are
reported beside the wall seconds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from _common import emit, log, own_cpu_seconds, photo_files
from featurestore.encoders import onnx_backend
from featurestore.encoders.efficientnet import packaged_weights
from featurestore.encoders.image import EfficientNetEncoder
from featurestore.encoders.onnx_image import OnnxImageModel, OnnxPlan
from featurestore.sources.imaging import decode_image, decode_pixels

TARGET = 1.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 images, 2 rounds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    files = photo_files()
    files = files[:64] if args.quick else files
    repeats = 2 if args.quick else args.repeats
    bs = args.batch_size

    shipped = EfficientNetEncoder(device="cpu", batch_size=bs)
    on_torch = EfficientNetEncoder(device="cpu", batch_size=bs, backend="torch")
    contiguous = EfficientNetEncoder(device="cpu", batch_size=bs, channels_last=False, backend="torch")
    bare = EfficientNet.from_name("efficientnet-lite0")
    bare.load_state_dict(torch.load(packaged_weights(), map_location="cpu", weights_only=True))
    bare.eval()
    shipped.load()
    on_torch.load()
    contiguous.load()
    pixels = np.stack([decode_pixels(f) for f in files[:bs]])
    pool = ThreadPoolExecutor(max_workers=shipped.workers)
    import onnxruntime as ort

    folder = onnx_backend.cache_folder(shipped.name, shipped.spec["weights"], OnnxPlan(block=None, size=shipped.size))
    graph = (folder / onnx_backend.MODEL_FILE).read_bytes()
    one_thread = OnnxImageModel(graph, n_threads=1)
    extended = OnnxImageModel(graph)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.intra_op_num_threads = onnx_backend.threads()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    extended.session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])

    def run_bare() -> None:
        for i in range(0, len(files), bs):
            x = torch.from_numpy(np.stack([decode_image(f) for f in files[i : i + bs]]))
            with torch.inference_mode():
                bare.extract_features(x).mean(dim=(2, 3))

    def run_no_overlap() -> None:
        for i in range(0, len(files), bs):
            shipped._forward(np.stack(list(pool.map(decode_pixels, files[i : i + bs]))))

    def run_decode_only() -> None:
        for i in range(0, len(files), bs):
            list(pool.map(decode_pixels, files[i : i + bs]))

    def forward_with(run: Callable[[np.ndarray], object]) -> Callable[[], None]:
        def go() -> None:
            for i in range(0, len(files), bs):
                run(pixels[: len(files[i : i + bs])])

        return go

    variants: dict[str, Callable[[], object]] = {
        "bare": run_bare,
        "shipped": lambda: shipped.encode(files),
        "torch": lambda: on_torch.encode(files),
        "contiguous": lambda: contiguous.encode(files),
        "no_overlap": run_no_overlap,
        "decode_only": run_decode_only,
        "forward_only": forward_with(shipped._forward),
        "forward_torch": forward_with(on_torch._forward),
        "forward_ort_extended": forward_with(extended.run),
        "forward_ort_1thread": forward_with(one_thread.run),
    }
    for fn in variants.values():  # warm-up: first-call allocations, oneDNN kernel selection
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats):
        for name, fn in variants.items():
            c0, started = own_cpu_seconds(), time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - started)
            cpu[name].append(own_cpu_seconds() - c0)
        log(f"round {round_ + 1}: " + ", ".join(f"{n} {s[-1]:.2f}s" for n, s in seconds.items()))
    pool.shutdown()
    best = {name: min(s) for name, s in seconds.items()}
    median = {name: statistics.median(s) for name, s in seconds.items()}
    ratio = best["bare"] / best["shipped"]
    emit(
        {
            "benchmark": "image_encode",
            "quick": args.quick,
            "images": len(files),
            "batch_size": bs,
            "torch_threads": torch.get_num_threads(),
            "decode_workers": shipped.workers,
            "backend": shipped.backend,
            "images_per_second_best": {name: round(len(files) / s, 1) for name, s in best.items()},
            "images_per_second_median": {name: round(len(files) / s, 1) for name, s in median.items()},
            "cpu_seconds_min": {name: round(min(c), 2) for name, c in cpu.items()},
            "onnx_vs_torch_forward_cpu": round(min(cpu["forward_torch"]) / min(cpu["forward_only"]), 2),
            "onnx_vs_torch_forward_wall": round(best["forward_torch"] / best["forward_only"], 2),
            "channels_last_speedup": round(best["contiguous"] / best["torch"], 2),
            "overlap_speedup": round(best["no_overlap"] / best["shipped"], 2),
            "overlap_hidden": round((best["decode_only"] + best["forward_only"] - best["shipped"]) / best["decode_only"], 2),
            "ratio": round(ratio, 2),
            "target": f">= {TARGET} (bare / shipped seconds, best rounds)",
            "pass": ratio >= TARGET,
        }
    )


if __name__ == "__main__":
    main()
