"""Training a spam head from stored features vs encoding the texts and training in one go.

Baseline: what a SetFit-style tool does on every fit: ``SentenceTransformer.encode`` the
messages with all-MiniLM-L6-v2 (the same packaged weights, batch 64), then fit the same
logistic regression (balanced class weights) on the vectors. Project: the features are already
in the store (materialized once, untimed): ``training_set`` reads them (point-in-time, grouped
split, manifest) and the same logistic regression is fit. Both fit on every message once (no
cross-validation), in the same process. Ratio = baseline seconds / project seconds: how many
times faster each re-fit is when the features come from the store.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import emit, log

from featurestore import settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="SMS messages (at most 4,460)")
    parser.add_argument("--quick", action="store_true", help="300 messages")
    args = parser.parse_args()
    rows = 300 if args.quick else args.rows
    work = Path(tempfile.mkdtemp(prefix="fs-bench-train-"))
    try:
        from featurestore import TextSource, materialize, training_set
        from models.classify import make_head

        lines = (settings.data_dir() / "spam" / "SMSSpamCollection").read_text(encoding="utf-8").splitlines()[:rows]
        path = work / "SMSSpamCollection"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log(f"[train_speed] materializing {rows} messages with minilm (setup, untimed) ...")
        materialize(TextSource(str(path), format="sms", id_col="@line", keep=("label",)), "sms", "minilm", store=str(work / "store"))

        started = time.perf_counter()
        ts = training_set("sms", "minilm", store=str(work / "store"), split="text")
        make_head("logistic", class_weight="balanced").fit(ts.X, ts.y)
        project = time.perf_counter() - started

        labels = [line.split("\t", 1)[0] for line in lines]
        texts = [line.split("\t", 1)[1] for line in lines]
        started = time.perf_counter()
        model = _sentence_transformer()
        vectors = model.encode(texts, batch_size=64)
        make_head("logistic", class_weight="balanced").fit(vectors, labels)
        baseline = time.perf_counter() - started
        ratio = baseline / project
        emit(
            {
                "benchmark": "train_speed",
                "rows": rows,
                "project_seconds": round(project, 3),
                "baseline_seconds": round(baseline, 3),
                "ratio": round(ratio, 1),
                "target": "report (a re-fit from stored features vs encode + fit on every fit)",
                "pass": ratio > 1.0,
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _sentence_transformer():
    """all-MiniLM-L6-v2 from its PyPI package, as a user's script loads it."""
    from sentence_transformers import SentenceTransformer

    from featurestore.encoders.sentence import minilm_path

    return SentenceTransformer(str(minilm_path()), device="cpu")


if __name__ == "__main__":
    main()
