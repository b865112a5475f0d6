"""The text heads' figures: the default spam head against the word and character TF-IDF baselines.

1. Cross-validation on every row of a view (the head's own grouped folds, the baselines on the
   same folds): ``featurestore train spam`` as a library call.
2. A held-out split: 80% of the rows by a split grouped by exact text (seed 0) train the default
   head (a labels file of their ids), the other 20% are scored by ``evaluate --input`` beside the
   baselines trained on the same 80%.

Needs a store with the SMS collection materialized (ids by line, label kept)::

    featurestore materialize ../shared/data/spam/SMSSpamCollection --view sms --encoder minilm \\
        --id-col @line --keep label --runner inline --store /tmp/sms-store
    python bench/text_heads.py --store /tmp/sms-store

Prints one JSON object (figures, not timings: a slow machine gives the same numbers).
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

from _common import REPO, emit, log  # noqa: F401  (REPO puts the checkout on sys.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--view", default="sms")
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--test-size", type=float, default=0.2)
    args = parser.parse_args()

    import numpy as np
    from sklearn.model_selection import GroupShuffleSplit

    from featurestore.training import training_set
    from models import registry, tasks
    from models.evaluation import evaluate
    from models.lexical import raw_texts, view_source

    started = time.perf_counter()
    full = tasks.train("spam", args.view, args.encoder, store=args.store)
    cv = {
        "rows": full.report["rows"],
        "folds": full.report["folds"],
        "head": full.choice["chosen"],
        "candidates": {c["head"]: round(c["f1"], 4) for c in full.choice["candidates"]},
        "f1": round(full.metrics["f1"], 4),
        "word_tfidf_f1": round(full.metrics["baseline_f1"], 4),
        "char_tfidf_f1": round(full.metrics["baseline_char_f1"], 4),
    }
    log(f"cross-validation done in {time.perf_counter() - started:.0f} s")

    ts = training_set(args.view, args.encoder, store=args.store, split="text")
    texts = raw_texts(ts, view_source(ts, store=args.store))
    train_rows, test_rows = next(GroupShuffleSplit(n_splits=1, test_size=args.test_size, random_state=0).split(ts.X, ts.y, ts.groups))
    with tempfile.TemporaryDirectory(prefix="text-heads-") as tmp:
        labels = Path(tmp) / "labels.csv"
        with labels.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["entity_id", "label"])
            writer.writerows(zip(ts.ids[train_rows].tolist(), ts.y[train_rows].tolist()))
        held_out = Path(tmp) / "SMSSpamCollection"  # the sms layout: label<TAB>text
        held_out.write_text("".join(f"{ts.y[i]}\t{texts[i]}\n" for i in test_rows), encoding="utf-8")
        result = tasks.train("spam", args.view, args.encoder, labels=str(labels), store=args.store)
        saved = registry.save_model("spam-80", result, store=args.store)
        scored = evaluate(saved, held_out, save=False, store=args.store)
    held = {
        "train_rows": int(len(train_rows)),
        "test_rows": scored.rows,
        "head": result.choice["chosen"],
        "f1": round(scored.metrics["f1"], 4),
        "roc_auc": round(scored.metrics["roc_auc"], 4),
        "word_tfidf_f1": round(scored.baselines["tfidf+logistic"]["f1"], 4),
        "char_tfidf_f1": round(scored.baselines["char-tfidf+logistic"]["f1"], 4),
        "overlap_of_texts": int(len(set(ts.groups[train_rows]) & set(ts.groups[test_rows]))),
    }
    emit({"benchmark": "text_heads", "cross_validation": cv, "held_out": held, "seconds": round(time.perf_counter() - started, 1),
          "distinct_labels": sorted(np.unique(ts.y).tolist())})


if __name__ == "__main__":
    main()
