"""Image featurization through the materialize flow vs the bare model's forward pass.

Baseline: the EfficientNet-Lite0 forward pass (the encoder's own loaded model, batch 32) over
the same images already decoded into tensors. Project: ``featurestore materialize FOLDER
--encoder efficientnet-lite0`` through the Prefect flow (decoding included). Ratio =
images/s of the flow's featurization (its encode tasks) / images/s of the bare forward; the
end-to-end ratio including process start-up and the Prefect server is reported beside it.
Inputs: the hymenoptera_train photos plus mirrored and cropped copies (distinct bytes, so the
store's content-addressed reuse does not skip them).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import cli, emit, last_json, log, timed_run

from featurestore import settings


def make_images(out: Path, copies: int, limit: int | None) -> int:
    from PIL import Image, ImageOps

    src = settings.data_dir() / "images" / "hymenoptera_train"
    paths = sorted(p for p in src.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg"})[:limit]
    n = 0
    for p in paths:
        with Image.open(p) as im:
            im = im.convert("RGB")
            variants = [im, ImageOps.mirror(im), im.crop((8, 8, im.width - 8, im.height - 8)), ImageOps.flip(im)][:copies]
            for k, v in enumerate(variants):
                dest = out / p.parent.name / f"{p.stem}-{k}.jpg"
                dest.parent.mkdir(parents=True, exist_ok=True)
                v.save(dest, quality=90)
                n += 1
    return n


def bare_forward(folder: Path, batch_size: int) -> tuple[float, float]:
    """Seconds of the forward pass alone over pre-decoded tensors, same model and batch size:
    the first pass (a fresh model, as the flow's task meets it) and the best of two more."""
    import numpy as np

    from featurestore.encoders import get_encoder
    from featurestore.sources.imaging import decode_image

    enc = get_encoder("efficientnet-lite0", device="cpu", batch_size=batch_size)
    model = enc.model()
    pixels = np.stack([decode_image(str(p)) for p in sorted(folder.rglob("*.jpg"))])
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(pixels), batch_size):
            enc._forward(model, pixels[i : i + batch_size])
        times.append(time.perf_counter() - started)
    return times[0], min(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="variants per photo (1-4)")
    parser.add_argument("--quick", action="store_true", help="30 photos, 1 variant")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fs-bench-image-"))
    try:
        n = make_images(work / "imgs", 1 if args.quick else args.copies, 30 if args.quick else None)
        log(f"[image_flow] {n} images; bare forward ...")
        bare, bare_warm = bare_forward(work / "imgs", 32)
        log(f"[image_flow] bare {bare:.1f}s; materialize through the flow ...")
        cmd = [cli(), "materialize", str(work / "imgs"), "--view", "img", "--encoder", "efficientnet-lite0", "--store", str(work / "store"), "--json"]
        wall, out = timed_run(cmd)
        summary = last_json(out)
        encode_seconds = summary["encode_seconds"]
        ratio = bare / encode_seconds
        emit(
            {
                "benchmark": "image_flow",
                "images": n,
                "bare_forward_seconds": round(bare, 2),
                "bare_forward_warm_seconds": round(bare_warm, 2),
                "ratio_vs_warm": round(bare_warm / encode_seconds, 3),
                "bare_images_per_second": round(n / bare, 1),
                "flow_encode_seconds": round(encode_seconds, 2),
                "flow_images_per_second": round(n / encode_seconds, 1),
                "end_to_end_seconds": round(wall, 2),
                "ratio": round(ratio, 3),
                "ratio_end_to_end": round(bare / wall, 3),
                "target": ">= 0.85 (flow featurization vs the bare model's first forward pass over decoded tensors)",
                "pass": ratio >= 0.85,
                "failed_rows": summary["failed"],
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
