"""The end-to-end demo on the embedded default store: the README's main job."""

from __future__ import annotations

from typing import Any, Callable

from featurestore import settings
from featurestore.errors import SourceError
from featurestore.sources import TextSource
from flows.materialize import run

Say = Callable[[str], None]


def run_demo(*, data: str | None = None, store: str | None = None, say: Say = print) -> dict[str, Any]:
    """Materialize the SMS Spam Collection with minilm and word2vec, then show that a re-run is free."""
    root = settings.data_dir(data)
    sms = root / "spam" / "SMSSpamCollection"
    if not sms.is_file():
        raise SourceError(f"the demo data is not at {sms}; pass --data with the folder that holds spam/SMSSpamCollection")
    source = TextSource(str(sms), format="sms", id_col="@line", keep=("label",))
    summaries = []
    for encoder in ("word2vec", "minilm"):
        say(f"materializing {sms.name} with {encoder} ...")
        summary = run(source, "sms", encoder, store=store, encoder_options={})
        summaries.append(summary)
        say(
            f"  {summary['encoder_id']}: {summary['encoded']} encoded, {summary['skipped']} unchanged, "
            f"{summary['failed']} failed, OOV share {summary['oov_share']:.1%}, "
            f"{summary['rows_per_second']:.0f} rows/s, table version {summary['table_version']}"
        )
    say("re-running minilm on the same file: unchanged rows cost a scan, not a forward pass ...")
    again = run(source, "sms", "minilm", store=store, encoder_options={})
    say(f"  {again['encoded']} encoded, {again['skipped']} unchanged in {again['seconds']:.1f} s")
    _nearest_example(store, say)
    return {"runs": summaries + [again]}


def _nearest_example(store: str | None, say: Say) -> None:
    """Show what the stored vectors are good for: the messages nearest to one spam message."""
    import numpy as np

    from featurestore.store import Store

    frame = Store(store).resolve_table("sms", "minilm").latest(["label"])
    labels = frame.columns.column("label").to_pylist()
    query = next(i for i, label in enumerate(labels) if label == "spam")
    scores = frame.vectors @ frame.vectors[query]
    top = np.argsort(-scores)[1:6]
    share = sum(labels[i] == "spam" for i in top) / len(top)
    say(f"nearest neighbours of spam message {frame.ids[query]} by minilm cosine: {share:.0%} are spam too")


__all__ = ["run_demo"]
