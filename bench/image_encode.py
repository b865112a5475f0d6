"""``efficientnet-lite0`` images/s on the ants-vs-bees photos vs a bare efficientnet-lite-pytorch loop.

Input: the JPEGs of ``images/hymenoptera_train`` in the data folder (``--quick``: the first 64),
encoded whole (decode + forward) on the CPU. Variants, interleaved round by round so that load
from other processes hits them alike; the ratios use each variant's best of ``--repeats`` rounds
(the least disturbed on a shared machine; medians are reported too):

- bare: ``EfficientNet.from_name`` + ``load_state_dict``, contiguous memory, each batch decoded
  (same :func:`decode_image`) then run through ``extract_features`` + mean: the obvious loop;
- shipped: ``EfficientNetEncoder.encode`` as configured by default (BatchNorm folded,
  channels_last, decoding one batch ahead in a thread pool);
- contiguous: the same with ``channels_last=False``;
- no_overlap: the shipped model, but each batch decoded (same pool) before its forward pass;
- decode_only / forward_only: the two halves alone, to show how much of the decoding the
  overlap hides: ``overlap_hidden = (decode_only + forward_only - shipped) / decode_only``.

Target: ``bare / shipped >= 1.3`` (seconds ratio, best rounds).
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

from _common import emit, log, photo_files
from featurestore.encoders.image import EfficientNetEncoder, packaged_weights
from featurestore.sources.imaging import decode_image

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
    contiguous = EfficientNetEncoder(device="cpu", batch_size=bs, channels_last=False)
    bare = EfficientNet.from_name("efficientnet-lite0")
    bare.load_state_dict(torch.load(packaged_weights(), map_location="cpu", weights_only=True))
    bare.eval()
    model = shipped.model()
    contiguous.load()
    pixels = np.stack([decode_image(f) for f in files[:bs]])
    pool = ThreadPoolExecutor(max_workers=shipped.workers)

    def run_bare() -> None:
        for i in range(0, len(files), bs):
            x = torch.from_numpy(np.stack([decode_image(f) for f in files[i : i + bs]]))
            with torch.inference_mode():
                bare.extract_features(x).mean(dim=(2, 3))

    def run_no_overlap() -> None:
        for i in range(0, len(files), bs):
            shipped._forward(model, np.stack(list(pool.map(decode_image, files[i : i + bs]))))

    def run_decode_only() -> None:
        for i in range(0, len(files), bs):
            list(pool.map(decode_image, files[i : i + bs]))

    def run_forward_only() -> None:
        for i in range(0, len(files), bs):
            shipped._forward(model, pixels[: len(files[i : i + bs])])

    variants: dict[str, Callable[[], object]] = {
        "bare": run_bare,
        "shipped": lambda: shipped.encode(files),
        "contiguous": lambda: contiguous.encode(files),
        "no_overlap": run_no_overlap,
        "decode_only": run_decode_only,
        "forward_only": run_forward_only,
    }
    for fn in variants.values():  # warm-up: first-call allocations, oneDNN kernel selection
        fn()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats):
        for name, fn in variants.items():
            started = time.perf_counter()
            fn()
            seconds[name].append(time.perf_counter() - started)
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
            "images_per_second_best": {name: round(len(files) / s, 1) for name, s in best.items()},
            "images_per_second_median": {name: round(len(files) / s, 1) for name, s in median.items()},
            "channels_last_speedup": round(best["contiguous"] / best["shipped"], 2),
            "overlap_speedup": round(best["no_overlap"] / best["shipped"], 2),
            "overlap_hidden": round((best["decode_only"] + best["forward_only"] - best["shipped"]) / best["decode_only"], 2),
            "ratio": round(ratio, 2),
            "target": f">= {TARGET} (bare / shipped seconds, best rounds)",
            "pass": ratio >= TARGET,
        }
    )


if __name__ == "__main__":
    main()
