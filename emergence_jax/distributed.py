"""Multi-host start-up and the "only process 0 touches shared files" rule, in one place.

`initialize()` calls `jax.distributed.initialize`: on a TPU pod, Slurm or Kubernetes JAX finds the
coordinator, process count and id itself; anywhere else (several processes on one machine, plain
VMs) set `JAX_COORDINATOR_ADDRESS=host:port` (read by JAX) with `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID` (read here). `JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo` gives CPU devices
cross-process collectives (the multi-process rehearsal in the tests runs that way).

Every process of a job computes the same numbers (the same batches, collectives in between), so
results are written by process 0 alone (`is_writer`) to a path every host can read (`gs://…`, or
a shared filesystem).
"""

from __future__ import annotations

import os

_initialized = False


def initialize() -> None:
    """Join the multi-process job (once; later calls do nothing)."""
    global _initialized
    if _initialized:
        return
    import jax

    kwargs = {}
    if os.environ.get("JAX_NUM_PROCESSES"):
        kwargs["num_processes"] = int(os.environ["JAX_NUM_PROCESSES"])
    if os.environ.get("JAX_PROCESS_ID"):
        kwargs["process_id"] = int(os.environ["JAX_PROCESS_ID"])
    jax.distributed.initialize(**kwargs)
    _initialized = True


def is_writer() -> bool:
    """Whether this process writes shared outputs: the only process, or process 0 of a job."""
    import jax

    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier `name` (nothing to wait for with one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
