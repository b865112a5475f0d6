"""Token-level MiniLM materialization of CoNLL-2003 eng.testa vs a bare ``AutoModel`` forward.

Baseline: a fresh Python process that imports transformers, loads ``AutoTokenizer`` +
``AutoModel`` from the MiniLM folder and runs the same sentences as word lists
(``is_split_into_words``), sorted by length, batches of 64, truncated at 256 pieces,
``last_hidden_state`` to numpy: no word pooling, no windows, nothing stored. Project:
``featurestore materialize eng.testa --encoder minilm --granularity token --json`` through the
``--runner inline``, one stored row per word. Both are whole processes timed from the outside,
so start-up counts on both sides: ratio = bare seconds / materialize seconds. The same command
through the Prefect flow (which adds the ephemeral server's start-up), the warm forward time
alone and the flow's encode tasks alone are reported beside it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import cli, emit, last_json, log, timed_run

from featurestore import settings


def sentences(path: Path, limit: int | None) -> list[list[str]]:
    from featurestore.sources import ConllSource

    out: list[list[str]] = []
    for batch in ConllSource(str(path)).batches():
        out.extend(batch.tokens or [])
    return out[:limit]


def bare_forward(words: list[list[str]], batch_size: int) -> float:
    import torch
    from transformers import AutoModel, AutoTokenizer

    from featurestore.encoders.sentence import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path()))
    model = AutoModel.from_pretrained(str(minilm_path())).eval()
    order = sorted(range(len(words)), key=lambda i: len(words[i]))
    started = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            batch = [words[j] for j in order[i : i + batch_size]]
            enc = tokenizer(batch, is_split_into_words=True, padding=True, truncation=True, max_length=256, return_tensors="pt")
            model(**enc).last_hidden_state.numpy()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the first 200 sentences")
    args = parser.parse_args()
    testa = settings.data_dir() / "ner" / "conll2003" / "eng.testa"
    work = Path(tempfile.mkdtemp(prefix="fs-bench-tokens-"))
    try:
        source = testa
        limit = 200 if args.quick else None
        if limit:
            source = work / "small.conll"
            source.write_text("\n\n".join(testa.read_text(encoding="utf-8").split("\n\n")[:limit]) + "\n", encoding="utf-8")
        words = sentences(source, None)
        log(f"[token_materialize] {len(words)} sentences; bare forward in a fresh process ...")
        import json as _json
        import sys as _sys

        (work / "words.json").write_text(_json.dumps(words))
        script = (
            "import json, sys, time; sys.path.insert(0, %r); from token_materialize import bare_forward; "
            "words = json.load(open(%r)); print(json.dumps({'forward_s': bare_forward(words, 64)}))"
        ) % (str(Path(__file__).resolve().parent), str(work / "words.json"))
        bare, bare_out = timed_run([_sys.executable, "-c", script])
        warm_forward = last_json(bare_out)["forward_s"]
        log(f"[token_materialize] bare {bare:.1f}s; materialize ...")
        cmd = [cli(), "materialize", str(source), "--view", "conll", "--encoder", "minilm", "--granularity", "token", "--json"]
        wall, out = timed_run([*cmd, "--store", str(work / "inline"), "--runner", "inline"])
        log("[token_materialize] again through the Prefect flow ...")
        flow_wall, flow_out = timed_run([*cmd, "--store", str(work / "flow")])
        summary = last_json(flow_out)
        assert last_json(out)["tokens"] == summary["tokens"]
        emit(
            {
                "benchmark": "token_materialize",
                "sentences": len(words),
                "token_rows": summary["tokens"],
                "bare_seconds": round(bare, 2),
                "bare_forward_only_seconds": round(warm_forward, 2),
                "materialize_seconds": round(wall, 2),
                "materialize_flow_seconds": round(flow_wall, 2),
                "ratio_flow": round(bare / flow_wall, 3),
                "flow_encode_seconds": summary["encode_seconds"],
                "ratio": round(bare / wall, 3),
                "ratio_encode_tasks": round(warm_forward / summary["encode_seconds"], 3),
                "target": ">= 0.8 (bare AutoModel process / materialize process --runner inline, both with start-up)",
                "pass": bare / wall >= 0.8,
            }
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
