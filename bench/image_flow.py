"""Image featurization through the materialize flow vs the bare model's forward pass.

Baseline: the bare EfficientNet-Lite0 forward pass, batch 32, over the same images already
decoded into tensors: the packaged network as a user builds it (``EfficientNet.from_name`` +
the packaged ImageNet weights, eval, ``extract_features`` + mean), first pass. Project:
``featurestore materialize FOLDER --encoder efficientnet-lite0`` through the Prefect flow
(decoding included). Ratio = images/s of the flow's featurization (its encode tasks) /
images/s of the bare forward. Reported beside it: the ratio against the encoder's own folded
network (BatchNorm folded into the convolutions, ~1.7x faster than the packaged one), which
isolates what decoding and storing cost around the same forward pass, and the end-to-end
ratio including process start-up and the Prefect server.
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


def bare_forward(folder: Path, batch_size: int) -> dict[str, float]:
    """Seconds of forward passes alone over pre-decoded tensors, batch ``batch_size``: the packaged
    network (first pass, as a user's script meets it) and the encoder's folded network (first
    pass, a fresh model as the flow's task meets it, and the best of two more)."""
    import numpy as np
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    from featurestore.encoders import get_encoder
    from featurestore.encoders.image import packaged_weights
    from featurestore.sources.imaging import decode_image

    pixels = np.stack([decode_image(str(p)) for p in sorted(folder.rglob("*.jpg"))])
    package = EfficientNet.from_name("efficientnet-lite0")
    package.load_state_dict(torch.load(packaged_weights(), map_location="cpu", weights_only=True))
    package.eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            package.extract_features(torch.from_numpy(pixels[i : i + batch_size])).mean(dim=(2, 3)).numpy()
    package_s = time.perf_counter() - started

    enc = get_encoder("efficientnet-lite0", device="cpu", batch_size=batch_size)
    model = enc.model()
    times = []
    for _ in range(3):
        started = time.perf_counter()
        for i in range(0, len(pixels), batch_size):
            enc._forward(model, pixels[i : i + batch_size])
        times.append(time.perf_counter() - started)
    return {"package": package_s, "folded": times[0], "folded_warm": min(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=4, help="variants per photo (1-4)")
    parser.add_argument("--quick", action="store_true", help="30 photos, 1 variant")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fs-bench-image-"))
    try:
        n = make_images(work / "imgs", 1 if args.quick else args.copies, 30 if args.quick else None)
        log(f"[image_flow] {n} images; bare forward ...")
        bare = bare_forward(work / "imgs", 32)
        log(f"[image_flow] bare {bare['package']:.1f}s (packaged), {bare['folded']:.1f}s (folded); materialize through the flow ...")
        cmd = [cli(), "materialize", str(work / "imgs"), "--view", "img", "--encoder", "efficientnet-lite0", "--store", str(work / "store"), "--json"]
        wall, out = timed_run(cmd)
        summary = last_json(out)
        encode_seconds = summary["encode_seconds"]
        ratio = bare["package"] / encode_seconds
        emit(
            {
                "benchmark": "image_flow",
                "images": n,
                "bare_forward_seconds": round(bare["package"], 2),
                "bare_images_per_second": round(n / bare["package"], 1),
                "folded_forward_seconds": round(bare["folded"], 2),
                "folded_forward_warm_seconds": round(bare["folded_warm"], 2),
                "flow_encode_seconds": round(encode_seconds, 2),
                "flow_images_per_second": round(n / encode_seconds, 1),
                "end_to_end_seconds": round(wall, 2),
                "ratio": round(ratio, 3),
                "ratio_vs_folded_forward": round(bare["folded"] / encode_seconds, 3),
                "ratio_vs_folded_warm": round(bare["folded_warm"] / encode_seconds, 3),
                "ratio_end_to_end": round(bare["package"] / wall, 3),
                "target": ">= 0.85 (flow featurization, decoding included, vs the bare packaged model's forward pass over decoded tensors)",
                "pass": ratio >= 0.85,
                "failed_rows": summary["failed"],
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
