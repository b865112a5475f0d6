"""The end-to-end demo on the embedded default store: the README's main job.

Texts (SMS spam), images (ants vs bees) and tokens (CoNLL-2003) go through the same flow; a
re-run shows that unchanged data costs a scan, not a forward pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from featurestore import settings
from featurestore.errors import SourceError
from featurestore.sources import TextSource, open_source
from flows.runner import run

Say = Callable[[str], None]


def _line(summary: dict[str, Any]) -> str:
    return (
        f"  {summary['encoder_id']}: {summary['encoded']} rows written, {summary['skipped']} unchanged, "
        f"{summary['failed']} failed, {summary['forward_passes']} forward passes, "
        f"{summary['rows_per_second']:.0f} rows/s, table version {summary['table_version']}"
    )


def run_demo(*, data: str | None = None, store: str | None = None, say: Say = print) -> dict[str, Any]:
    """Materialize the demo data sets into ``store`` and show what the features are good for."""
    root = settings.data_dir(data)
    sms = root / "spam" / "SMSSpamCollection"
    if not sms.is_file():
        raise SourceError(f"the demo data is not at {sms}; pass --data with the folder that holds spam/SMSSpamCollection")
    runs: list[dict[str, Any]] = []

    def step(title: str, source: Any, view: str, encoder: str, **options: Any) -> dict[str, Any]:
        say(title)
        summary = run(source, view, encoder, store=store, encoder_options=options)
        runs.append(summary)
        say(_line(summary))
        for failure in summary["failures"][:3]:
            say(f"    failed: {failure['entity_id']}: {failure['reason']}")
        return summary

    texts = TextSource(str(sms), format="sms", id_col="@line", keep=("label",))
    step("SMS texts -> word2vec (mean of word vectors)", texts, "sms", "word2vec")
    step("SMS texts -> minilm (all-MiniLM-L6-v2)", texts, "sms", "minilm")
    again = step("the same SMS file again: unchanged rows cost a scan, not a forward pass", texts, "sms", "minilm")
    say(f"  {again['encoded']} rows encoded on the re-run, in {again['seconds']:.1f} s")
    _nearest_example(store, say)

    _index_and_query(store, "sms", "minilm", say, texts=["Congratulations! You won a free prize, call now to claim", "are we still meeting for lunch tomorrow?"])
    images = root / "images" / "hymenoptera_train"
    if images.is_dir():
        step("ant and bee photos -> efficientnet-lite0 (penultimate layer, 1280-d)", open_source(images), "hymenoptera", "efficientnet-lite0")
        bee = next(iter(sorted((images / "bees").glob("*.jpg"))), None)
        if bee is not None:
            _index_and_query(store, "hymenoptera", None, say, images=[str(bee)])
    conll = root / "ner" / "conll2003"
    for name in ("eng.testa", "eng.train"):
        if (conll / name).is_file():
            source = open_source(conll / name)
            step(f"CoNLL-2003 {name} sentences -> minilm token vectors (one row per word)", source, f"conll-{name.split('.')[1]}", "minilm", granularity="token")
    return {"runs": runs}


def _index_and_query(store: str | None, view: str, encoder: str | None, say: Say, **query: Any) -> None:
    """Build or update the view's FAISS index through the index flow, then run example queries."""
    from featurestore.index import search
    from flows.index import index_flow

    info = index_flow(view, encoder, store=store)
    say(
        f"index over {view}: {info['factory']}, {info['rows']} rows, recall@10 {info['recall_at_10']:.3f}, "
        f"{'rebuilt' if info['rebuilt'] else 'updated in place'}"
    )
    label = "text" if "texts" in query else "image"
    for q, hits in zip(next(iter(query.values())), search(view, encoder, store=store, k=3, **query)):
        shown = ", ".join(f"{h['entity_id']} ({h.get('label', '')}, {h['score']:.2f})" for h in hits)
        say(f"  {label} {Path(q).name if label == 'image' else repr(q)} -> {shown}")


def _nearest_example(store: str | None, say: Say) -> None:
    """Show what the stored vectors are good for: the messages nearest to one spam message."""
    import numpy as np

    from featurestore.store import Store

    frame = Store(store).resolve_table("sms", "minilm").latest(["label"])
    labels = frame.columns.column("label").to_pylist()
    query = next(i for i, label in enumerate(labels) if label == "spam")
    scores = frame.vectors @ frame.vectors[query]
    top = np.argsort(-scores)[1:11]
    share = sum(labels[i] == "spam" for i in top) / len(top)
    say(f"  the 10 messages nearest to spam message {frame.ids[query]} by minilm cosine: {share:.0%} are spam too")


__all__ = ["run_demo"]
