"""The live progress table of a sweep: per stage, how many jobs are done, failed and left, what
runs now, and how long the sweep has taken. Printed when a job starts and when the sweep ends."""

from __future__ import annotations

import sys
import time

from emergence_jax.sweep.config import STAGES
from emergence_jax.sweep.jobs import Job


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressTable:
    """Counts per stage; `done_before` are the jobs finished by earlier runs (skipped now)."""

    def __init__(self, jobs: list[Job], done_before: set[str], *, stream=None, enabled: bool = True):
        self.jobs = jobs
        self.status = {job.id: ("skipped" if job.id in done_before else "to do") for job in jobs}
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self.started = time.monotonic()
        self.current: tuple[Job, float] | None = None

    def start(self, job: Job) -> None:
        self.current = (job, time.monotonic())
        self.status[job.id] = "running"
        self.show()

    def finish(self, job: Job, status: str) -> None:
        self.status[job.id] = status
        self.current = None

    def render(self) -> str:
        header = f"{'stage':<14}{'done':>6}{'skipped':>9}{'failed':>8}{'to do':>7}{'total':>7}"
        lines = [header]
        for stage in STAGES:
            states = [self.status[job.id] for job in self.jobs if job.stage == stage]
            if not states:
                continue
            left = sum(s in ("to do", "running", "preempted") for s in states)
            lines.append(
                f"{stage:<14}{states.count('done'):>6}{states.count('skipped'):>9}{states.count('failed'):>8}{left:>7}{len(states):>7}"
            )
        elapsed = time.monotonic() - self.started
        if self.current is not None:
            job, since = self.current
            lines.append(f"now: {job.label} (job {_clock(time.monotonic() - since)}, sweep {_clock(elapsed)})")
        else:
            lines.append(f"sweep {_clock(elapsed)}")
        return "\n".join(lines)

    def show(self) -> None:
        if self.enabled:
            print(self.render(), file=self.stream, flush=True)

    def list_jobs(self) -> str:
        """Every job with its status, one per line (for --dry-run)."""
        return "\n".join(f"{self.status[job.id]:<8} {job.id}" for job in self.jobs)
