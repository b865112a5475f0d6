"""The end-to-end demo on the embedded default store: the README's main job.

Texts (SMS spam), images (ants vs bees), tokens (CoNLL-2003) and documents (Cranfield) go
through the same flow; a re-run shows that unchanged data costs a scan, not a forward pass;
indexes answer example queries; then the four heads train on the stored features and a table
puts each beside its baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from featurestore import settings
from featurestore.errors import SourceError
from featurestore.sources import TextSource, open_source
from flows.prefect_api import ensure_api
from flows.runner import run

if TYPE_CHECKING:
    from featurestore.materialization import RunSummary

Say = Callable[[str], None]


def _line(summary: RunSummary) -> str:
    return (
        f"  {summary.encoder_id}: {summary.encoded} rows written, {summary.skipped} unchanged, "
        f"{summary.failed} failed, {summary.forward_passes} forward passes, "
        f"{summary.rows_per_second:.0f} rows/s, table version {summary.table_version}"
    )


def run_demo(*, data: str | None = None, store: str | None = None, say: Say = print) -> dict[str, Any]:
    """Materialize the demo data sets into ``store`` and show what the features are good for."""
    root = settings.data_dir(data)
    sms = root / "spam" / "SMSSpamCollection"
    if not sms.is_file():
        raise SourceError(f"the demo data is not at {sms}; pass --data with the folder that holds spam/SMSSpamCollection")

    runs: list[dict[str, Any]] = []

    def step(title: str, source: Any, view: str, encoder: str, **options: Any) -> RunSummary:
        say(title)
        summary = run(source, view, encoder, store=store, encoder_options=options)
        runs.append(summary.to_dict())
        say(_line(summary))
        for failure in summary.failures[:3]:
            say(f"    failed: {failure['entity_id']}: {failure['reason']}")
        return summary

    texts = TextSource(str(sms), format="sms", id_col="@line", keep=("label",))
    step("SMS texts -> word2vec (mean of word vectors)", texts, "sms", "word2vec")
    step("SMS texts -> minilm (all-MiniLM-L6-v2)", texts, "sms", "minilm")
    again = step("the same SMS file again: unchanged rows cost a scan, not a forward pass", texts, "sms", "minilm")
    say(f"  {again.encoded} rows encoded on the re-run, in {again.seconds:.1f} s")
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
            step(f"CoNLL-2003 {name} sentences -> minilm token vectors (one row per word, mean of the last 4 layers)", source,
                 f"conll-{name.split('.')[1]}", "minilm", granularity="token", layers="last4")
    cranfield = root / "search" / "cranfield"
    if (cranfield / "cran.all.1400").is_file():
        docs = open_source(cranfield / "cran.all.1400", format="cranfield")  # id: the .I number, text: title + body
        step("Cranfield documents -> minilm", docs, "cranfield", "minilm")
        step("Cranfield documents -> word2vec (a ranking feature)", docs, "cranfield-w2v", "word2vec")
    heads = _train_heads(root, store, say)
    return {"runs": runs, "heads": heads}


def _train_heads(root: Path, store: str | None, say: Say) -> list[dict[str, Any]]:
    """Train the heads whose views exist, through the training flow, and print them beside their baselines."""
    from featurestore.store import Store
    from flows.train import train_flow

    views = {t.meta.view for t in Store(store).tables()}
    jobs: list[tuple[str, str, str | None, dict[str, Any]]] = [("spam", "sms", "minilm", {})]
    if "hymenoptera" in views:
        jobs.append(("image", "hymenoptera", None, {}))
    if {"conll-train", "conll-testa"} <= views:
        # the quick head (an MLP over a ±1 word window), not the default BiLSTM-CRF (README: higher F1, minutes more)
        jobs.append(("ner", "conll-train", "minilm", {"eval_view": "conll-testa", "head": "mlp", "max_epochs": 10}))
    if {"cranfield", "cranfield-w2v"} <= views:
        cran = root / "search" / "cranfield"
        jobs.append(("ranking", "cranfield", "minilm", {"queries": str(cran / "cran.qry"), "qrels": str(cran / "cranqrel"),
                                                         "qrels_by": "position", "word2vec_view": "cranfield-w2v"}))
    results = []
    ensure_api()
    for task, view, encoder, options in jobs:
        say(f"training the {task} head on {view} ...")
        summary = train_flow(task, view, encoder, store=store, name=task, options=options).to_dict()
        results.append(summary)
        say(f"  {summary['name']} v{summary['version']}: {_headline(summary)}")
    say("")
    say("| task | metric | head | baseline |")
    say("|---|---|---|---|")
    for summary in results:
        for row in _result_rows(summary):
            say("| " + " | ".join(row) + " |")
    return results


def _headline(summary: dict[str, Any]) -> str:
    from models.registry import headline_metrics

    return ", ".join(f"{k} {v:.3f}" for k, v in headline_metrics(summary["metrics"]).items())


def _result_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(task, metric, head, baseline) rows of the results table."""
    m, task = summary["metrics"], summary["task"]
    if task == "spam":
        base = f"word TF-IDF {m['baseline_f1']:.3f}, character TF-IDF {m['baseline_char_f1']:.3f}" if "baseline_char_f1" in m else (
            f"{m['baseline_f1']:.3f} (TF-IDF + logistic regression)" if "baseline_f1" in m else "-")
        return [(task, "F1 of spam, 5-fold CV grouped by text", f"{m['f1']:.3f}", base)]
    if task == "image":
        base = f"{m['majority_accuracy']:.3f} (majority class)" if "majority_accuracy" in m else "-"
        return [(task, "accuracy, 5-fold CV", f"{m['accuracy']:.3f}", base)]
    if task == "ranking":
        base = f"BM25 {m['bm25_ndcg@10']:.3f}, dense {m['dense_ndcg@10']:.3f}"
        return [(task, "nDCG@10, 5-fold query CV", f"{m['ndcg@10']:.3f}", base)]
    if task == "ner":
        base = f"{m['baseline_f1']:.3f} (each word's most frequent training tag)" if "baseline_f1" in m else "-"
        return [(task, "entity F1 (seqeval) on eng.testa, trained on eng.train", f"{m['f1']:.3f}", base)]
    key = next((k for k in ("f1", "entity_f1", "accuracy") if k in m), next(iter(m)))
    return [(task, key, f"{m[key]:.3f}", "-")]


def _index_and_query(store: str | None, view: str, encoder: str | None, say: Say, **query: Any) -> None:
    """Build or update the view's FAISS index through the index flow, then run example queries."""
    from featurestore.index import search
    from flows.index import index_flow

    ensure_api()
    result = index_flow(view, encoder, store=store)
    say(
        f"index over {view}: {result.info.factory}, {result.info.rows} rows, recall@10 {result.info.recall_at_10:.3f}, "
        f"{'rebuilt' if result.rebuilt else 'updated in place'}"
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
