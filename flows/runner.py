"""Running a materialize from the command line or Python: plan first, then the flow when there is work.

Prefect is imported only when a flow runs, so a run with nothing to do stays a quick scan.
"""

from __future__ import annotations

import threading
from typing import Any

from featurestore import materialization as lib
from featurestore.errors import FeatureStoreError, InvalidArgumentError
from featurestore.locks import view_lock
from featurestore.sources import Source, to_dict
from flows.dask_runner import DaskOptions
from flows.prefect_api import ensure_api
from flows.progress import ProgressFn, progress_hook

RUNNERS = ("local", "inline", "dask")
DEVICE_ENCODERS = ("minilm", "st", "efficientnet-lite0")  # the encoders that take a device


def encoder_options(
    encoder: str,
    *,
    granularity: str = "sentence",
    layers: str | None = None,
    subword: str | None = None,
    long_text: str | None = None,
    tta: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """The encoder keywords a materialize of ``encoder`` passes: the granularity, token, long-text
    and TTA options given, and the device of the encoders that take one.

    ``featurestore materialize`` and the project file's views both build them here, so the
    same options write the same table (the same encoder_id). The encoder is what checks them
    (their values, the granularity they apply to, whether it takes them at all), when
    :func:`featurestore.encoders.get_encoder` builds it.
    """
    from featurestore import settings

    given = {"layers": layers, "subword": subword, "long_text": long_text, "tta": tta}
    options: dict[str, Any] = {} if granularity == "sentence" else {"granularity": granularity}
    options.update({k: v for k, v in given.items() if v is not None})
    if encoder.split(":")[0] in DEVICE_ENCODERS:
        options["device"] = settings.device(device)
    return options


def run(
    source: Source,
    view: str,
    encoder: str,
    *,
    store: str | None = None,
    runner: str = "local",
    dask: DaskOptions | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Plan first (a scan, no Prefect), then run the flow on the plan when there is work.

    User errors surface in the plan, before Prefect starts, with the store untouched. A run with
    nothing to encode or delete finishes in-process: starting the flow server would cost more
    than the scan. ``runner="inline"`` runs every step in-process without Prefect;
    ``runner="dask"`` runs the shard tasks on a Dask cluster (``dask``, default a LocalCluster).
    """
    if runner not in RUNNERS:
        raise InvalidArgumentError(f"runner must be one of: {', '.join(RUNNERS)}. Got {runner!r} instead.")
    if dask is not None and runner != "dask":
        raise FeatureStoreError(f"Dask options (--address, --dask-workers, --dask-threads) need --runner dask, not {runner!r}")
    cluster = (dask or DaskOptions()) if runner == "dask" else None
    if cluster is not None:
        cluster.check()  # before planning: a missing extra or a dead scheduler leaves the store untouched
    from featurestore.encoders import get_encoder

    encoder_id = get_encoder(encoder, **(options.get("encoder_options") or {})).encoder_id  # the table this run writes
    with view_lock(store, view, "materialize", encoder_id=encoder_id):  # one writer per table: see featurestore.locks
        return _plan_and_run(source, view, encoder, store, runner, progress, options, cluster)


def _plan_and_run(
    source: Source,
    view: str,
    encoder: str,
    store: str | None,
    runner: str,
    progress: ProgressFn | None,
    options: dict[str, Any],
    cluster: DaskOptions | None,
) -> dict[str, Any]:
    p = lib.plan(source, view, encoder, store=store, **options)
    if runner == "inline" or not (p.shards or p.copies or p.tombstones):
        return lib.run_plan(p, progress=progress)
    from flows.materialize import materialize_flow

    flow = materialize_flow if cluster is None else materialize_flow.with_options(task_runner=cluster.task_runner())
    # The weights load while the flow server starts; Dask workers load their own.
    warm = _load_in_background(p) if cluster is None else None
    try:
        with lib.discard_on_error(p):
            ensure_api()  # before the flow: a Prefect that cannot start is one line, the plan discarded
            with progress_hook(progress):
                return flow(to_dict(source), view, encoder, store, options, plan_path=str(p.path))
    finally:
        if warm is not None:
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
