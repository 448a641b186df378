"""The sweep's output folder, local or on a bucket (`gs://…`, through `etils.epath`).

Layout under `output_dir`:

- `<records>` (e.g. `results.csv`): every results row of the sweep;
- `pretrain_loss/<model>.json`: each checkpoint's measured pretraining loss;
- `done/<job id>.json`: one marker per finished job, written after its rows were appended;
- `sweep.yaml`: the resolved config of the latest run.

Every write is all-or-nothing (a local temporary file renamed into place; a bucket object is
replaced whole), so a killed sweep leaves either the old or the new file. Only one process (the
first of a pod) writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from etils import epath

from emergence_jax.errors import UserError
from emergence_jax.io import atomic_write_text, to_json_text
from emergence_jax.records import append_records

REMOTE_PREFIXES = ("gs://", "s3://")


def is_remote(path: str) -> bool:
    return str(path).startswith(REMOTE_PREFIXES)


def require_filesystem_path(path: str, field: str) -> None:
    """A `UserError` when `path` is a bucket URL: finetuning runs (Orbax checkpoints, metrics log,
    staging, exported weights before upload) are written with filesystem operations."""
    if is_remote(path):
        raise UserError(
            f"{field} {path}: finetuning runs write checkpoints and logs through the filesystem, not to a bucket URL; "
            "use a local or shared filesystem path (for a bucket: a gcsfuse mount, e.g. /mnt/bucket/...), and keep gs:// for output_dir"
        )


class SweepOutput:
    """Reads and writes the files of one sweep's `output_dir`; `scratch` is a local folder for
    staging the records file of a remote output."""

    def __init__(self, output_dir: str, records: str, *, scratch: Path):
        self.remote = is_remote(output_dir)
        self.root = epath.Path(output_dir) if self.remote else Path(output_dir)
        self.records = self.root / records
        self.scratch = scratch

    def marker(self, job_id: str):
        return self.root / "done" / f"{job_id}.json"

    def is_done(self, job_id: str) -> bool:
        return self.marker(job_id).exists()

    def mark_done(self, job_id: str, info: dict) -> None:
        self.write_json(self.marker(job_id), info)

    def loss_file(self, model_slug: str):
        return self.root / "pretrain_loss" / f"{model_slug}.json"

    def read_json(self, path) -> dict:
        return json.loads(path.read_text())

    def write_json(self, path, payload: dict) -> None:
        if self.remote:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(to_json_text(payload) + "\n")
        else:
            atomic_write_text(Path(path), to_json_text(payload) + "\n")

    def write_text(self, name: str, text: str) -> None:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.remote:
            path.write_text(text)
            return
        atomic_write_text(path, text)

    def append_rows(self, rows: list[dict]) -> None:
        """Append validated rows to the records file. Rows already there (a job redone after a kill
        between appending and marking it done) are skipped; conflicting ones are an error."""
        if not self.remote:
            append_records(self.records, rows)
            return
        staged = self.scratch / self.records.name
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.unlink(missing_ok=True)
        if self.records.exists():
            staged.write_bytes(self.records.read_bytes())
        append_records(staged, rows)
        self.records.parent.mkdir(parents=True, exist_ok=True)
        self.records.write_bytes(staged.read_bytes())
