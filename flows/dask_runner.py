"""Shard tasks on a Dask cluster: prefect-dask's DaskTaskRunner, a LocalCluster unless given an address.

Planning and the final commit stay in the calling process; only ``encode_shard`` tasks travel,
each with a plan path and a shard index. A worker process loads each encoder once: the
encoders keep their weights in a per-process cache keyed by weights path and device, so the
next task on that worker reuses them. Distributed's nanny starts every worker process with
``OMP_NUM_THREADS=1`` (its ``distributed.nanny.pre-spawn-environ``), so torch runs one
intra-op thread per task and a worker's parallelism is its thread count.

Workers read the plan and staged shards from ``<store>/_staging`` and append to the Delta
table themselves, so on a remote cluster the store must be on storage every worker mounts at
the same path.

Workers of a local cluster report their task runs to this process's Prefect API: they are
spawned after :func:`flows.prefect_api.ensure_api` put its URL in ``PREFECT_API_URL``, so they
start no API server of their own. Workers of a remote cluster need ``PREFECT_API_URL`` set
where they run.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from featurestore.errors import FeatureStoreError

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

CONNECT_TIMEOUT_S = 5


@dataclass(frozen=True)
class DaskOptions:
    """Where shard tasks run: the scheduler at ``address``, or a LocalCluster of worker processes."""

    address: str | None = None
    workers: int = 2
    threads_per_worker: int = 1

    def check(self) -> None:
        """Fail before planning: prefect-dask is installed, the counts are positive, the scheduler answers."""
        from featurestore.extras import require

        require("prefect_dask", "dask")
        if self.workers < 1 or self.threads_per_worker < 1:
            raise FeatureStoreError(
                f"--dask-workers and --dask-threads must be at least 1. Got {self.workers} and {self.threads_per_worker} instead."
            )
        if self.address is not None:
            check_scheduler(self.address)

    def task_runner(self) -> TaskRunner:
        from prefect_dask import DaskTaskRunner

        if self.address is not None:
            return DaskTaskRunner(address=self.address)
        return DaskTaskRunner(
            cluster_class="distributed.LocalCluster",
            cluster_kwargs={
                "n_workers": self.workers,
                "threads_per_worker": self.threads_per_worker,
                "processes": True,  # torch and the GIL: threads of one process do not scale
                "dashboard_address": None,
                "silence_logs": logging.ERROR,  # not the nanny's "still alive, killing" lines at every close
            },
        )


def check_scheduler(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Ask the scheduler who it is: an unreachable one, or one with no workers, would leave the run waiting."""
    try:
        with ThreadPoolExecutor(1) as pool:  # its own event loop, whatever the caller runs in
            info = pool.submit(asyncio.run, _identity(address, timeout_s)).result()
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise FeatureStoreError(
            f"cannot reach the Dask scheduler at {address} ({reason}); start one (dask scheduler) or leave out "
            "--address to run a local cluster"
        ) from None
    if not info.get("n_workers"):
        raise FeatureStoreError(f"the Dask scheduler at {address} has no workers; start some (dask worker {address})")


async def _identity(address: str, timeout_s: float) -> dict[str, Any]:
    from distributed.comm import connect

    comm = await connect(address, timeout=f"{timeout_s}s")
    try:
        await comm.write({"op": "identity", "reply": True})
        return await asyncio.wait_for(comm.read(), timeout_s)
    finally:
        await comm.close()
