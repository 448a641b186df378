"""The sweep loop: skip what is done, run the rest job by job, publish each job's rows and then
its done marker. A job killed anywhere is redone (or resumed, for finetuning) by the next run;
rows it had already appended are identical and kept once, so the results end up exactly as if
nothing had been interrupted."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import yaml

from emergence_jax.errors import UserError
from emergence_jax.sweep.config import SweepConfig
from emergence_jax.sweep.jobs import Job, finetune_recipe, job_settings, slug, validate_sweep
from emergence_jax.sweep.progress import ProgressTable
from emergence_jax.sweep.stages import JobRunner, Preempted
from emergence_jax.sweep.storage import SweepOutput, is_remote

PREEMPTED_EXIT_CODE = 143


def work_dir(config: SweepConfig) -> Path:
    """Local scratch: `work_dir`, or `output_dir/work` for a local output, or a per-output folder
    under ~/.cache for a bucket."""
    if config.work_dir:
        return Path(config.work_dir)
    if not is_remote(config.output_dir):
        return Path(config.output_dir) / "work"
    digest = hashlib.sha1(config.output_dir.encode()).hexdigest()[:8]
    return Path.home() / ".cache" / "emergence_jax" / "sweeps" / f"{slug(config.output_dir.rstrip('/').rsplit('/', 1)[-1])}-{digest}"


def _processes(config: SweepConfig) -> tuple[int, int]:
    """(this process's index, number of processes), joining the multi-process job when asked
    (`emergence_jax.distributed.initialize`: before anything else touches a device)."""
    if not config.distributed:
        return 0, 1
    import jax

    from emergence_jax.distributed import initialize

    initialize()
    return jax.process_index(), jax.process_count()


def _check_shared(output: SweepOutput, scratch: Path, process_count: int, source: str) -> None:
    """Every process must see what process 0 writes: a file process 0 puts in the output folder
    and in the work folder (finetuning checkpoints) must be visible to all, or the sweep stops."""
    if process_count == 1:
        return
    import secrets

    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    from emergence_jax.distributed import barrier

    token = int(multihost_utils.broadcast_one_to_all(np.int32(secrets.randbelow(2**31 - 1))))
    probes = [output.root / f".shared-check-{token}", scratch / f".shared-check-{token}"]
    if jax.process_index() == 0:
        for probe in probes:
            probe.parent.mkdir(parents=True, exist_ok=True)
            probe.write_text(str(token))
    barrier("emergence_jax.sweep.shared_check")
    seen = np.array([all(probe.exists() for probe in probes)], dtype=np.int32)
    everyone = np.asarray(multihost_utils.process_allgather(seen))
    barrier("emergence_jax.sweep.shared_check_done")
    if jax.process_index() == 0:
        for probe in probes:
            probe.unlink()
    if not everyone.all():
        raise UserError(
            f"{source}: output_dir {output.root} and work dir {scratch} must be shared by all {process_count} processes "
            "(a gs:// bucket or a shared filesystem for output_dir; a shared filesystem for work_dir, which holds finetuning checkpoints)"
        )


def enable_compilation_cache(config: SweepConfig, scratch: Path) -> None:
    """Keep every compiled program on disk: jobs of the same shapes (every D and seed of one
    checkpoint size) and runs restarted after a preemption skip XLA compilation."""
    if config.compilation_cache_dir == "none":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", config.compilation_cache_dir or str(scratch / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _agreed_done(jobs: list[Job], done: set[str], process_count: int) -> set[str]:
    """The first process's view of which jobs are done, shared with every process of a pod so all
    of them run the same jobs together."""
    if process_count == 1:
        return done
    import numpy as np
    from jax.experimental import multihost_utils

    mask = np.array([job.id in done for job in jobs], dtype=np.int32)
    mask = np.asarray(multihost_utils.broadcast_one_to_all(mask))
    return {job.id for job, flag in zip(jobs, mask) if flag}


def run_sweep(config: SweepConfig, *, source: str, progress: bool = True, keep_going: bool = False, dry_run: bool = False) -> int:
    """Run every job of `config` not yet done; returns the exit code (0 done, 1 some job failed
    with --keep-going, 143 preempted)."""
    index, count = (0, 1) if dry_run else _processes(config)
    jobs = validate_sweep(config, source, check_folders=not dry_run)
    scratch = work_dir(config)
    output = SweepOutput(config.output_dir, config.records, scratch=scratch / "staging")
    recipe = finetune_recipe(config) if any(job.stage == "finetune" for job in jobs) else None
    settings = {job.id: job_settings(job, config, recipe) for job in jobs}
    finished = _finished_jobs(jobs, output, settings, source)
    if dry_run:
        table = ProgressTable(jobs, finished)
        print(table.list_jobs())
        table.show()
        return 0
    enable_compilation_cache(config, scratch)
    _check_shared(output, scratch, count, source)
    writer = index == 0
    done = _agreed_done(jobs, finished, count)
    table = ProgressTable(jobs, done, enabled=writer)
    runner = JobRunner(config, scratch, output, progress=progress and writer)
    if writer:
        from emergence_jax.config import config_to_dict

        output.write_text("sweep.yaml", yaml.safe_dump(config_to_dict(config), sort_keys=False))
    table.show()
    failures = 0
    for job in jobs:
        if job.id in done:
            runner.clean_up(job)
            continue
        table.start(job)
        began = time.time()
        try:
            rows = runner.run(job)
        except Preempted:
            table.finish(job, "preempted")
            table.show()
            print(f"preempted during {job.id}; its checkpoint is saved; run the same sweep again to resume")
            return PREEMPTED_EXIT_CODE
        except (UserError, KeyboardInterrupt):
            raise
        except Exception as err:  # a job's crash; with --keep-going the rest of the grid still runs
            if not keep_going:
                raise
            failures += 1
            table.finish(job, "failed")
            print(f"{job.id} failed: {type(err).__name__}: {err}")
            continue
        if writer:
            _publish(output, runner, job, rows, settings=settings[job.id], seconds=time.time() - began)
        runner.clean_up(job)
        table.finish(job, "done")
    table.show()
    print(f"results: {output.records}")
    return 1 if failures else 0


def _finished_jobs(jobs: list[Job], output: SweepOutput, settings: dict[str, dict], source: str) -> set[str]:
    """Ids of the jobs with a done marker; a marker written with other settings is an error (its
    rows would be taken for this config's)."""
    finished = set()
    for job in jobs:
        if not output.is_done(job.id):
            continue
        recorded = output.read_json(output.marker(job.id)).get("settings")
        if recorded is not None and recorded != settings[job.id]:
            changed = sorted(key for key in set(recorded) | set(settings[job.id]) if recorded.get(key) != settings[job.id].get(key))
            raise UserError(
                f"{source}: {job.id} was done in {output.root} with different settings ({', '.join(changed)}); "
                f"use a new output_dir, or delete {output.marker(job.id)} and its rows to redo it"
            )
        finished.add(job.id)
    return finished


def _publish(output: SweepOutput, runner: JobRunner, job: Job, rows: list[dict], *, settings: dict, seconds: float) -> None:
    """Rows (or the measured loss) to the output, then the done marker: in this order, so a job
    marked done has its results in place."""
    if job.stage == "pretrain_loss":
        output.write_json(output.loss_file(slug(job.model.name)), runner.loss_payload(job))
    if rows:
        output.append_rows(rows)
    output.mark_done(job.id, {"job": job.id, "rows": len(rows), "seconds": round(seconds, 1), "host": os.uname().nodename, "settings": settings})
