"""Token-level MiniLM (``encode_tokens``) vs a bare ``transformers.AutoModel`` forward, on CoNLL-2003 dev.

Input: the sentences of ``eng.testa`` (3,250; ``--quick``: the first 300), as token lists and as
the tokens joined by spaces. Measured in one process, weights loaded and warmed up first:

- bare: ``AutoTokenizer`` + ``AutoModel`` from the MiniLM folder; texts sorted by length, batches
  of ``--batch-size``, ``tokenizer(batch, padding=True, truncation=True, max_length=256)``,
  ``model(**batch).last_hidden_state`` to numpy. No word alignment, no pooling, no windows.
- pipeline: ``get_encoder("minilm", granularity="token").encode_tokens(texts, tokens)``: one
  ``(n_words, 384)`` array per sentence, every word kept.

The sides run alternately on the same chunks of ``--chunk`` sentences (bare first on even chunks,
the pipeline first on odd ones), so load from other work on a shared machine hits both alike;
the seconds are sums over chunks. Target: ``bare / pipeline >= 0.8``. The breakdown splits the
pipeline into tokenisation, forward passes (``_forward``: padding, model, copy out) and the
rest (spans, stitching, pooling).
"""

from __future__ import annotations

import argparse
import time

from _common import emit, log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=250, help="sentences per alternating chunk")
    parser.add_argument("--quick", action="store_true", help="the first 300 sentences only")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from featurestore import settings
    from featurestore.encoders import get_encoder
    from featurestore.encoders.sentence import minilm_path
    from featurestore.sources import ConllSource

    path = settings.data_dir() / "ner" / "conll2003" / "eng.testa"
    tokens = [t for batch in ConllSource(str(path)).batches() for t in batch.tokens]
    if args.quick:
        tokens = tokens[:300]
    texts = [" ".join(t) for t in tokens]
    log(f"[token_speed] {len(texts)} sentences, {sum(map(len, tokens))} tokens, torch threads {torch.get_num_threads()}")

    enc = get_encoder("minilm", device="cpu", granularity="token", batch_size=args.batch_size)
    enc.load()
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    model = AutoModel.from_pretrained(str(minilm_path())).eval()

    def bare(texts: list[str]) -> int:
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        pieces = 0
        with torch.inference_mode():
            for start in range(0, len(order), args.batch_size):
                batch = tokenizer([texts[i] for i in order[start : start + args.batch_size]], padding=True,
                                  truncation=True, max_length=enc.max_seq_length, return_tensors="pt")
                model(**batch).last_hidden_state.numpy()
                pieces += int(batch["attention_mask"].sum())
        return pieces

    timings = {"forward_s": 0.0, "tokenize_s": 0.0}
    forward, call_tokenizer = enc._forward, enc.model().tokenizer.__class__.__call__

    def timed_forward(*a, **k):  # _forward is a generator: time each step, not the pooling between them
        steps = forward(*a, **k)
        while True:
            t0 = time.perf_counter()
            item = next(steps, None)
            timings["forward_s"] += time.perf_counter() - t0
            if item is None:
                return
            yield item

    def timed_tokenizer(self, *a, **k):
        t0 = time.perf_counter()
        try:
            return call_tokenizer(self, *a, **k)
        finally:
            timings["tokenize_s"] += time.perf_counter() - t0

    log("[token_speed] warm-up")
    warm = slice(0, min(128, len(texts)))
    enc.encode_tokens(texts[warm], tokens[warm])
    with torch.inference_mode():
        model(**tokenizer(texts[warm], padding=True, return_tensors="pt"))

    enc._forward = timed_forward  # type: ignore[method-assign]
    bare_s = pipeline_s = 0.0
    bare_pieces = words = 0
    chunks = range(0, len(texts), args.chunk)
    for c, start in enumerate(chunks):
        part = slice(start, start + args.chunk)
        for side in (("bare", "pipeline") if c % 2 == 0 else ("pipeline", "bare")):
            t0 = time.perf_counter()
            if side == "bare":
                bare_pieces += bare(texts[part])
                bare_s += time.perf_counter() - t0
                continue
            tokenizer.__class__.__call__ = timed_tokenizer  # the encoder's tokenizer is of the same class
            result = enc.encode_tokens(texts[part], tokens[part])
            pipeline_s += time.perf_counter() - t0
            tokenizer.__class__.__call__ = call_tokenizer
            words += sum(len(v) for v in result.vectors)
            assert all(v.shape[1] == 384 and not np.isnan(v).any() for v in result.vectors)
        log(f"[token_speed] chunk {c + 1}/{len(chunks)}: bare {bare_s:.1f}s, pipeline {pipeline_s:.1f}s so far")
    assert words == sum(map(len, tokens))

    ratio = bare_s / pipeline_s
    other = pipeline_s - timings["forward_s"] - timings["tokenize_s"]
    emit({
        "benchmark": "token_speed",
        "quick": args.quick,
        "sentences": len(texts),
        "words": words,
        "bare_pieces": bare_pieces,
        "batch_size": args.batch_size,
        "bare_seconds": round(bare_s, 3),
        "pipeline_seconds": round(pipeline_s, 3),
        "chunk": args.chunk,
        "pipeline_breakdown": {**{k: round(v, 3) for k, v in timings.items()}, "other_s": round(other, 3)},
        "words_per_second": round(words / pipeline_s, 1),
        "ratio_vs_bare": round(ratio, 4),
        "target_ratio_vs_bare": ">= 0.8",
        "pass": ratio >= 0.8,
    })


if __name__ == "__main__":
    main()
