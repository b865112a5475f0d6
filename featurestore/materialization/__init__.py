"""Incremental materialization: plan the diff, encode shards, commit, summarise.

:func:`materialize` is the one orchestration: it takes the table's lock, plans, then runs the
plan (in-process by default; ``execute=`` hands it to the Prefect or Dask flow). Three steps:

1. :func:`plan` (planning.py) streams the source once, hashes every record, compares
   ``(entity_id, content_hash, kept values)`` with the table's latest state and stages the rows
   to write as Parquet files under ``<store>/_staging``. User errors surface here.
2. :func:`encode_shard` (encoding.py) encodes one shard, each distinct content once, and
   appends it in one idempotent commit.
3. :func:`finish` (runs.py) reuses stored vectors for repeated content, writes tombstones
   (only for ``full_sync``), records the run and removes the staging folder.

Tasks pass the plan's path and a shard index, never arrays.
"""

from featurestore.materialization.encoding import encode_shard, load_encoder, reuse_vectors
from featurestore.materialization.planning import Plan, plan
from featurestore.materialization.runs import Execute, RunSummary, discard_on_error, finish, materialize, run_plan, summarize

__all__ = ["Execute", "Plan", "RunSummary", "discard_on_error", "encode_shard", "finish", "load_encoder", "materialize", "plan", "reuse_vectors", "run_plan", "summarize"]
