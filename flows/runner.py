"""Running a materialize from the command line or Python: plan first, then the flow when there is work; the runner switch.

Prefect is imported only when a flow runs, so a run with nothing to do stays a quick scan.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Literal, TypeVar, get_args

from featurestore import materialization as lib
from featurestore.errors import FeatureStoreError, InvalidArgumentError
from featurestore.materialization.runs import RunSummary
from featurestore.progress import ProgressFn
from featurestore.sources import Source
from flows.dask_runner import DaskOptions
from flows.prefect_api import ensure_api
from flows.progress import progress_hook

Runner = Literal["local", "inline", "dask"]  # a Prefect flow on the local API, this process without Prefect, shard tasks on Dask
RUNNERS: tuple[str, ...] = get_args(Runner)
STEP_RUNNERS = ("local", "inline")  # train and refresh: each step with work as its Prefect flow, or all in this process
T = TypeVar("T")
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


def check_runner(runner: object, allowed: tuple[str, ...] = RUNNERS) -> Runner:
    """``runner`` when it is one of ``allowed`` (every entry that takes a runner checks it here), else the one-line error."""
    if runner not in allowed:
        raise InvalidArgumentError(f"runner must be one of: {', '.join(allowed)}. Got {runner!r} instead.")
    return runner  # type: ignore[return-value]


def in_flow(runner: Runner, step: Callable[[], T], flow: Callable[[], T]) -> T:
    """The one switch between runners for a step: ``step()`` in this process for ``inline``, else
    ``flow()`` (a Prefect flow) once the Prefect API is up."""
    if check_runner(runner) == "inline":
        return step()
    ensure_api()
    return flow()


def run(
    source: Source,
    view: str,
    encoder: str,
    *,
    store: str | None = None,
    runner: Runner = "local",
    dask: DaskOptions | None = None,
    progress: ProgressFn | None = None,
    **options: Any,
) -> RunSummary:
    """:func:`featurestore.materialize` with its plan run by ``runner``: a Prefect flow (``local``),
    shard tasks on a Dask cluster (``dask``: ``dask``, default a LocalCluster) or in-process (``inline``).

    User errors surface in the plan, before Prefect starts, with the store untouched. A run with
    nothing to encode or delete finishes in-process: starting the flow server would cost more
    than the scan. ``options`` are :func:`featurestore.materialize` keywords.
    """
    runner = check_runner(runner)
    if dask is not None and runner != "dask":
        raise FeatureStoreError(f"Dask options (--address, --dask-workers, --dask-threads) need --runner dask, not {runner!r}")
    cluster = (dask or DaskOptions()) if runner == "dask" else None
    if cluster is not None:
        cluster.check()  # before planning: a missing extra or a dead scheduler leaves the store untouched

    def execute(p: lib.Plan) -> RunSummary:
        if not (p.shards or p.copies or p.tombstones):
            return lib.run_plan(p, progress=progress)
        # The weights load while the flow server starts; Dask workers load their own.
        warm = _load_in_background(p) if runner == "local" else None
        try:
            with lib.discard_on_error(p):  # a Prefect that cannot start is one line, the plan discarded
                return in_flow(runner, lambda: lib.run_plan(p, progress=progress), lambda: _run_flow(p, cluster, progress))
        finally:
            if warm is not None:
                warm.join()

    return lib.materialize(source, view, encoder, store=store, execute=execute, **options)


def _run_flow(p: lib.Plan, cluster: DaskOptions | None, progress: ProgressFn | None) -> RunSummary:
    """The materialize flow on plan ``p``: its shards as Prefect tasks (on Dask workers with ``cluster``)."""
    from flows.materialize import materialize_flow

    flow = materialize_flow if cluster is None else materialize_flow.with_options(task_runner=cluster.task_runner())
    with progress_hook(progress):
        return flow(str(p.path))


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
