"""Running a materialize from the command line or Python: plan first, then the flow when there is work.

Prefect is imported only when a flow runs, so a run with nothing to do stays a quick scan.
"""

from __future__ import annotations

import threading
from typing import Any

from featurestore import materialization as lib
from featurestore.errors import FeatureStoreError
from featurestore.sources import Source, to_dict
from flows.progress import ProgressFn, progress_hook


def run(
    source: Source,
    view: str,
    encoder: str,
    *,
    store: str | None = None,
    runner: str = "local",
    progress: ProgressFn | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Plan first (a scan, no Prefect), then run the flow on the plan when there is work.

    User errors surface in the plan, before Prefect starts, with the store untouched. A run with
    nothing to encode or delete finishes in-process: starting the flow server would cost more
    than the scan. ``runner="inline"`` runs every step in-process without Prefect.
    """
    if runner not in ("local", "inline"):
        raise FeatureStoreError(f"runner must be one of: local, inline. Got {runner!r} instead.")
    p = lib.plan(source, view, encoder, store=store, **options)
    if runner == "inline" or not (p.shards or p.copies or p.tombstones):
        return lib.run_plan(p, progress=progress)
    from flows.materialize import materialize_flow

    warm = _load_in_background(p)  # the weights load while the flow server starts
    try:
        with lib.discard_on_error(p), progress_hook(progress):
            return materialize_flow(to_dict(source), view, encoder, store, options, plan_path=str(p.path))
    finally:
        warm.join()


def _load_in_background(p: lib.Plan) -> threading.Thread:
    """Load the plan's encoder weights in a thread; the process-wide cache keeps them for the tasks.

    A failure here is not reported: the first encode task loads again and raises it with its
    own context.
    """

    def load() -> None:
        try:
            lib.load_encoder(p).load()
        except Exception:  # noqa: BLE001 - re-raised by the encode task that needs the weights
            return

    thread = threading.Thread(target=load, name="featurestore-warm-encoder", daemon=True)
    thread.start()
    return thread
