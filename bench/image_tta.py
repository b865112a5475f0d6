"""What test-time augmentation costs per image: ``efficientnet-lite0`` with ``tta`` none, flip, flip5crop.

Input: the JPEGs of ``images/hymenoptera_train`` in the data folder (``--images N``, default
128; ``--quick``: 32), encoded whole (decode + forward) on the CPU by ``EfficientNetEncoder.encode``.
Variants, alternating round by round (A B C D, A B C D, ...) so that load from other processes
hits them alike:

- none: the centre crop (the default encoder);
- flip: the centre crop and its mirror image, one batched forward pass (2 views);
- flip5crop: centre and corner crops of the 256 x 256 centre square and their mirrors, one
  batched forward pass (10 views);
- flip5crop_loop: the same ten views from the same decoded pixels, but one forward pass per
  view (the per-crop loop), averaged: the same work as flip5crop, to compare.

Reported: wall and CPU seconds per image (min and median over rounds) of each variant, the
cost of each TTA relative to none (seconds ratio of the best rounds), and flip5crop_loop /
flip5crop (the batched views against the per-crop loop, same work on both sides).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

from _common import emit, log, own_cpu_seconds, photo_files
from featurestore.encoders.image import EfficientNetEncoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 images, 2 rounds")
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    files = photo_files()
    files = files[: 32 if args.quick else args.images]
    repeats = max(2, args.repeats)
    bs = args.batch_size
    encoders = {tta: EfficientNetEncoder(device="cpu", batch_size=bs, tta=tta) for tta in ("none", "flip", "flip5crop")}
    batched = encoders["flip5crop"]
    batched.load()

    def loop_per_view() -> np.ndarray:
        """flip5crop's views from the same decoded squares, one forward pass per view, then the mean."""
        out = []
        for _, arrays in batched._decoded(files):
            x = np.stack(arrays)
            s, far = batched.size, batched.resize - batched.size
            centre = int(round(far / 2.0))
            total = None
            for top, left in [(centre, centre), (0, 0), (0, far), (far, 0), (far, far)]:
                crop = x[:, top : top + s, left : left + s]
                for view in (crop, crop[:, :, ::-1]):
                    pooled = batched._run(view)
                    total = pooled if total is None else total + pooled
            out.append(total / 10)
        return np.concatenate(out)

    variants: dict[str, Callable[[], np.ndarray]] = {
        **{tta: (lambda enc=enc: enc.encode(files)) for tta, enc in encoders.items()},
        "flip5crop_loop": loop_per_view,
    }
    agree = float(np.abs(variants["flip5crop"]() - variants["flip5crop_loop"]()).max())  # also the warm-up of both
    for fn in variants.values():
        fn()
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats):
        for name, fn in variants.items():
            c0, t0 = own_cpu_seconds(), time.perf_counter()
            fn()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(own_cpu_seconds() - c0)
        log(f"round {round_ + 1}: " + ", ".join(f"{n} {s[-1]:.2f}s" for n, s in wall.items()))
    n = len(files)

    def per_image(values: list[float]) -> dict[str, float]:
        return {"min": round(min(values) / n * 1000, 2), "median": round(statistics.median(values) / n * 1000, 2)}

    emit(
        {
            "benchmark": "image_tta",
            "quick": args.quick,
            "images": n,
            "rounds": repeats,
            "batch_size": bs,
            "backend": batched.backend,
            "wall_ms_per_image": {name: per_image(s) for name, s in wall.items()},
            "cpu_ms_per_image": {name: per_image(s) for name, s in cpu.items()},
            "cost_vs_none": {name: round(min(wall[name]) / min(wall["none"]), 2) for name in ("flip", "flip5crop")},
            "loop_over_batched": round(min(wall["flip5crop_loop"]) / min(wall["flip5crop"]), 2),
            "loop_max_abs_difference": agree,
        }
    )


if __name__ == "__main__":
    main()
