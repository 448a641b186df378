"""Running one sweep job through the project's own commands: `pretrain-loss`, `evaluate` and
`finetune` (which resumes from its Orbax checkpoints and evaluates what it trained).

Each job writes into its own local folder under the sweep's work directory and returns the results
rows it produced; publishing them to the output is the runner's business. Re-running a job that was
interrupted is always safe: evaluation rows are appended idempotently and finetuning resumes from
its latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path

from emergence_jax.sweep.config import SweepConfig
from emergence_jax.sweep.jobs import Job, finetune_recipe, slug


class Preempted(Exception):
    """A finetuning job saved its state on SIGTERM; run the sweep again to resume it."""


def _invoke(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


class JobRunner:
    """Runs jobs of one sweep; `output` is the sweep's `SweepOutput` (read for known losses)."""

    def __init__(self, config: SweepConfig, work_dir: Path, output, *, progress: bool = True):
        self.config = config
        self.work = work_dir
        self.output = output
        self.progress = progress
        self._recipe = None

    def job_dir(self, job: Job) -> Path:
        return self.work / "jobs" / job.id

    def run(self, job: Job) -> list[dict]:
        """Run `job`; returns its results rows (none for a pretraining-loss job)."""
        from emergence_jax.records import read_records

        folder = self.job_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        if job.stage == "pretrain_loss":
            self._pretrain_loss(job)
            return []
        rows_file = folder / "rows.jsonl"
        if job.stage == "fewshot":
            self._fewshot(job, rows_file)
        else:
            self._finetune(job, rows_file)
        return [self._with_model_columns(job, row) for row in read_records(rows_file)]

    def loss_payload(self, job: Job) -> dict:
        """The pretraining-loss JSON of the job's model, copied from the output when measured by an
        earlier run (or by the first process of a pod)."""
        local = self.local_loss_file(job)
        if not local.exists():
            from emergence_jax.evaluate.pretrain_loss_command import write_json_atomically

            write_json_atomically(local, self.output.read_json(self.output.loss_file(slug(job.model.name))))
        return json.loads(local.read_text())

    def local_loss_file(self, job: Job) -> Path:
        return self.work / "pretrain_loss" / f"{slug(job.model.name)}.json"

    def _pretrain_loss_argument(self, job: Job) -> str:
        if job.model.pretrain_loss is not None:
            return repr(float(job.model.pretrain_loss))
        self.loss_payload(job)
        return str(self.local_loss_file(job))

    def _pretrain_loss(self, job: Job) -> None:
        from emergence_jax.evaluate import pretrain_loss_command

        corpus = self.config.loss_corpus
        argv = [
            "--model", job.model.path, "--corpus", *corpus.paths, "--out", str(self.local_loss_file(job)),
            "--model-id", job.model.name, "--text-field", corpus.text_field, "--split", corpus.split,
            "--sequence-length", str(corpus.sequence_length), "--batch-size", str(corpus.batch_size),
            "--compute-dtype", self.config.evaluate.compute_dtype,
        ]
        if corpus.data_dir:
            argv += ["--data-dir", corpus.data_dir]
        if corpus.max_tokens is not None:
            argv += ["--max-tokens", str(corpus.max_tokens)]
        _invoke(pretrain_loss_command, argv)

    def _fewshot(self, job: Job, rows_file: Path) -> None:
        from emergence_jax.evaluate import command as evaluate_command

        settings = self.config.evaluate
        argv = [
            "--model", job.model.path, "--task", job.task.name, "--out", str(rows_file),
            "--pretrain-loss", self._pretrain_loss_argument(job), "--shots", str(job.shots),
            "--data-dir", self.config.data_dir, "--seed", str(settings.seed), "--batch-size", str(settings.batch_size),
            "--model-id", job.model.name, "--train-examples", "0", "--max-new-tokens", str(settings.max_new_tokens),
            "--compute-dtype", settings.compute_dtype,
        ]
        if job.task.split:
            argv += ["--split", job.task.split]
        if job.task.limit is not None:
            argv += ["--limit", str(job.task.limit)]
        _invoke(evaluate_command, argv)

    def finetune_config(self, job: Job):
        """The job's `FinetuneConfig`: the sweep's recipe with this job's model, task, D, seed and
        folders filled in."""
        if self._recipe is None:
            self._recipe = finetune_recipe(self.config)
        recipe = self._recipe
        if job.model.pretrain_loss is not None:
            loss = float(job.model.pretrain_loss)
        else:
            loss = float(self.loss_payload(job)["pretrain_loss"])
        return dataclasses.replace(
            recipe,
            run_dir=str(self.job_dir(job) / "run"),
            distributed=False,
            model=dataclasses.replace(recipe.model, path=job.model.path, preset="", tokenizer="", name=job.model.name, pretrain_loss=loss),
            data=dataclasses.replace(recipe.data, task=job.task.name, data_dir=self.config.data_dir, num_examples=job.train_examples, subset_seed=job.seed),
            eval=dataclasses.replace(
                recipe.eval, enabled=True, split=job.task.split, shots=job.task.finetuned_shots, limit=job.task.limit,
                records=str((self.job_dir(job) / "rows.jsonl").resolve()),
            ),
        )

    def _finetune(self, job: Job, rows_file: Path) -> None:
        from emergence_jax.train import command as train_command

        config = self.finetune_config(job)
        if train_command.finetune(config, progress=self.progress) == train_command.PREEMPTED_EXIT_CODE:
            raise Preempted(job.id)

    def clean_up(self, job: Job) -> None:
        """After a finetuning job is done: delete its exported weights and training checkpoints (a
        few times the model's size each) unless `finetune.keep_outputs`."""
        if job.stage != "finetune" or self.config.finetune.keep_outputs:
            return
        run_dir = self.job_dir(job) / "run"
        for name in ("model", "checkpoints"):
            shutil.rmtree(run_dir / name, ignore_errors=True)

    def _with_model_columns(self, job: Job, row: dict) -> dict:
        """`row` plus the checkpoint's params / tokens / flops and the loss corpus, where known."""
        extra = {key: getattr(job.model, key) for key in ("params", "tokens", "flops") if getattr(job.model, key) is not None}
        if job.model.pretrain_loss is None and "loss_corpus" not in row:
            corpus = self.loss_payload(job).get("loss_corpus")
            if corpus:
                extra["loss_corpus"] = corpus
        return {**extra, **row}
