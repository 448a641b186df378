"""Preemption-safe training checkpoints with Orbax.

`TrainCheckpointer` saves the train state (sharded arrays) and a small JSON record of where the run
is (step, rows of the example stream consumed, seed) every `every_steps` steps, when the process
receives SIGTERM, and at the end; it keeps the last `keep`. Orbax writes each checkpoint into a
temporary directory and renames it into place only once complete, so a process killed mid-save
leaves no half-written checkpoint: `restore_latest` sees complete checkpoints only, and stale
temporary directories are removed when the next run opens the directory.

Restoring reads into an abstract target that carries the shardings of the live state, so each
device reads only its own shard. The data order and any randomness are pure functions of
`(seed, step)`, so the step restores them exactly.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from emergence_jax.errors import UserError


class PreemptionNotice:
    """Set when SIGTERM arrives (single host) or all hosts reach JAX's preemption sync point."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._previous = None

    def install(self) -> PreemptionNotice:
        if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, lambda signum, frame: self._event.set())
        return self

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def reached(self, manager: ocp.CheckpointManager, step: int) -> bool:
        if jax.process_count() > 1:
            return bool(manager.reached_preemption(step))
        return self._event.is_set()


class TrainCheckpointer:
    """Orbax `CheckpointManager` over `directory`: periodic, on-preemption and final saves."""

    def __init__(self, directory: str | Path, *, every_steps: int, keep: int):
        if keep < 1:
            raise UserError(f"checkpoint.keep must be at least 1, got {keep}")
        if every_steps < 0:
            raise UserError(f"checkpoint.every_steps must be 0 (off) or positive, got {every_steps}")
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            save_interval_steps=max(every_steps, 1),
            cleanup_tmp_directories=True,
            enable_async_checkpointing=True,
        )
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)
        self.preemption = PreemptionNotice().install()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def restore_latest(self, state: Any) -> tuple[Any, dict] | None:
        """(state, progress record) of the newest complete checkpoint, laid out like `state`; None if none."""
        step = self.manager.latest_step()
        if step is None:
            return None
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target), progress=ocp.args.JsonRestore())
        )
        return restored.state, dict(restored.progress)

    def due(self, step: int) -> bool:
        """Whether the state after `step` optimizer steps should be saved now (periodic)."""
        return self.every_steps > 0 and step % self.every_steps == 0

    def preempted(self, step: int) -> bool:
        return self.preemption.reached(self.manager, step)

    def save(self, step: int, state: Any, progress: dict) -> None:
        """Start saving (asynchronously: arrays are copied off the devices before this returns)."""
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), progress=ocp.args.JsonSave(progress)),
            force=True,
        )

    def close(self) -> None:
        """Wait for pending saves to be complete and renamed into place."""
        self.manager.wait_until_finished()
        self.manager.close()
        self.preemption.uninstall()
