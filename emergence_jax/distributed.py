"""Multi-host start-up and the "only process 0 touches shared files" rule, in one place.

`initialize()` calls `jax.distributed.initialize`: on a TPU pod, Slurm or Kubernetes JAX finds the
coordinator, process count and id itself; anywhere else (several processes on one machine, plain
VMs) set `JAX_COORDINATOR_ADDRESS=host:port` (read by JAX) with `JAX_NUM_PROCESSES` and
`JAX_PROCESS_ID` (read here). `JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo` gives CPU devices
cross-process collectives (the multi-process rehearsal in the tests runs that way).

Every process of a job computes the same numbers (the same batches, collectives in between), so
results are written by process 0 alone (`is_writer`) to a path every host can read (`gs://…`, or
a shared filesystem). `host_array` reads a result whose shards span hosts (e.g. sampled tokens,
split over the batch); `broadcast_json` hands process 0's decision (a resumed state, a verdict) to all.
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


def host_array(x):
    """The whole value of the `jax.Array` `x` as a numpy array on this host, also when its shards
    live on several hosts' devices (then gathered from every process: all must call it alike)."""
    import numpy as np

    if getattr(x, "is_fully_addressable", True):
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def broadcast_json(obj):
    """Process 0's `obj` (JSON-serialisable) on every process; every process must call it, and the
    others' `obj` is ignored. With one process, `obj` itself."""
    import json

    import jax

    if jax.process_count() == 1:
        return obj
    import numpy as np
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if jax.process_index() == 0 else np.zeros(0, np.uint8)
    size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
    buffer = np.zeros(size, np.uint8)
    buffer[: data.size] = data
    return json.loads(np.asarray(multihost_utils.broadcast_one_to_all(buffer)).tobytes().decode())
