"""The out-of-distribution warning of ``predict``: what it flags, and what it costs.

Setup (untimed): the first ``--rows`` SMS messages materialized with minilm (CPU) and a spam head
trained on them and saved (with its training rows and leave-one-out distance threshold).

- shares: ``--inputs`` held-out SMS messages (the lines after the training ones), Cranfield
  abstracts (``cran.all.1400``'s .W text) and CoNLL-2003 eng.testa sentences (tokens joined, at
  least 8 words), each encoded and predicted: the share of inputs beyond the threshold, the
  median distance, whether the warning shows, and the share the head calls spam;
- predict cost: ``predict_features`` on the same encoded features with the check (the loaded
  head) and without it (the same head, no description), alternated A B for ``--rounds`` rounds,
  as one batch of all inputs and as one input per call; wall and CPU seconds, min and median;
- training cost: the leave-one-out distances of the training rows by :func:`models.novelty.describe`
  (FAISS exact search) vs scikit-learn's ``NearestNeighbors`` (brute-force cosine, 2 neighbours)
  on the same rows, alternated; both give the same distances (checked).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from _common import emit, log, sms_path

from featurestore import settings


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def alternate(sides: dict[str, Callable[[], Any]], rounds: int) -> dict[str, Any]:
    """A B A B ...: per side min and median of wall and CPU seconds, and the ratio of medians (first / second)."""
    seconds: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for _ in range(rounds):
        for name, fn in sides.items():
            seconds[name].append(timed(fn))
    out: dict[str, Any] = {}
    for name, runs in seconds.items():
        wall, cpu = [w for w, _ in runs], [c for _, c in runs]
        out[name] = {"wall_min": round(min(wall), 5), "wall_median": round(statistics.median(wall), 5),
                     "cpu_min": round(min(cpu), 5), "cpu_median": round(statistics.median(cpu), 5)}
    first, second = list(sides)
    out["ratio_wall_median"] = round(out[first]["wall_median"] / out[second]["wall_median"], 3)
    out["ratio_cpu_median"] = round(out[first]["cpu_median"] / max(out[second]["cpu_median"], 1e-9), 3)
    return out


def cranfield(n: int) -> list[str]:
    text = (settings.data_dir() / "search" / "cranfield" / "cran.all.1400").read_text(encoding="utf-8")
    return [" ".join(doc.split("\n.W\n", 1)[1].split()) for doc in re.split(r"^\.I ", text, flags=re.M)[1:n + 1]]


def conll(n: int) -> list[str]:
    sentences, words = [], []
    for line in (settings.data_dir() / "ner" / "conll2003" / "eng.testa").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if len(words) >= 8:
                sentences.append(" ".join(words))
            words = []
        elif not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
    return sentences[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4000, help="SMS messages the head trains on (at most 4,460 - --inputs)")
    parser.add_argument("--inputs", type=int, default=200, help="inputs of each kind")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each timing (>= 2)")
    parser.add_argument("--quick", action="store_true", help="500 training messages, 50 inputs of each kind, 2 rounds")
    args = parser.parse_args()
    rows, inputs, rounds = (500, 50, 2) if args.quick else (args.rows, args.inputs, max(args.rounds, 2))
    work = Path(tempfile.mkdtemp(prefix="fs-bench-ood-"))
    try:
        from featurestore import TextSource, materialize, training_set
        from models import novelty, spam
        from models.classify import encode_inputs, predict_features
        from models.registry import load_model, save_model

        lines = sms_path().read_text(encoding="utf-8").splitlines()
        if rows + inputs > len(lines):
            raise SystemExit(f"bench: --rows + --inputs must be at most {len(lines)}")
        (work / "sms.txt").write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
        store = work / "store"
        log(f"[ood_warning] materializing {rows} messages with minilm and training the spam head (setup, untimed) ...")
        materialize(TextSource(str(work / "sms.txt"), format="sms", id_col="@line", keep=("label", "text")), "sms", "minilm",
                    store=store, encoder_options={"device": "cpu"})
        model = load_model("spam", save_model("spam", spam.train("sms", store=store), store=store).version, store=store)

        kinds = {"sms_held_out": [line.split("\t", 1)[1] for line in lines[rows:rows + inputs]],
                 "cranfield_abstracts": cranfield(inputs), "conll_sentences": conll(inputs)}
        shares, features = {}, []
        for kind, texts in kinds.items():
            X, errors = encode_inputs(model, [{"text": t} for t in texts])
            out = predict_features(model, X, list(range(len(texts))), errors)
            summary = novelty.summary(out, model.novelty)
            shares[kind] = {"inputs": summary["inputs"], "beyond": summary["beyond"], "share": summary["share"],
                            "median_distance": round(float(np.median([p["ood_distance"] for p in out])), 4),
                            "warning": summary["warning"] is not None,
                            "predicted_spam_share": round(sum(p["label"] == "spam" for p in out) / len(out), 4)}
            features.append(X)
            log(f"[ood_warning] {kind}: {shares[kind]}")
        X = np.vstack(features)
        ids = list(range(len(X)))
        bare = dataclasses.replace(model, novelty=None)  # the same head, saved without a description
        batch = alternate({"with_check": lambda: predict_features(model, X, ids),
                           "without": lambda: predict_features(bare, X, ids)}, rounds)
        single = alternate({"with_check": lambda: [predict_features(model, X[i:i + 1], [i]) for i in ids],
                            "without": lambda: [predict_features(bare, X[i:i + 1], [i]) for i in ids]}, rounds)

        from sklearn.neighbors import NearestNeighbors

        train_X = training_set("sms", store=store).X
        unit = train_X / np.linalg.norm(train_X, axis=1, keepdims=True)

        def sklearn_loo() -> np.ndarray:
            distance, _ = NearestNeighbors(n_neighbors=2, metric="cosine", algorithm="brute").fit(unit).kneighbors(unit)
            return distance[:, 1]

        ours, theirs = novelty.describe(train_X), np.percentile(sklearn_loo(), novelty.QUANTILE)
        assert abs(ours.threshold - theirs) < 1e-4, (ours.threshold, theirs)
        describe = alternate({"faiss_describe": lambda: novelty.describe(train_X), "sklearn_nearest_neighbors": sklearn_loo}, rounds)
        record = model.manifest["novelty"]
        emit({
            "benchmark": "ood_warning",
            "training_rows": rows,
            "threshold": round(record["threshold"], 4),
            "training_quantiles": {k: round(v, 4) for k, v in record["quantiles"].items()},
            "file_bytes": (model.path / novelty.FILE).stat().st_size,
            "shares": shares,
            "predict_batch_of_all_inputs": {"rows": len(X), **batch},
            "predict_one_input_per_call": {"calls": len(X), **single},
            "training_leave_one_out": {"rows": len(train_X), **describe},
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
