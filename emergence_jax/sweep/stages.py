"""Running one sweep job through the project's library functions: `measure_pretrain_loss`,
`evaluate_checkpoint` and `run_finetune` (which resumes from its Orbax checkpoints and evaluates the
finetuned model in memory). Typed calls, no argv lists.

Each job returns the results rows it produced; publishing them (and the measured losses) to the
output is the runner's business, done by process 0 alone. Evaluation models are loaded onto the
sweep's `evaluate.mesh` (every device by default), so a checkpoint is never whole on one device,
and every process of a pod runs each job together. Re-running an interrupted job is always safe:
rows are appended idempotently and finetuning resumes from its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from emergence_jax.sweep.config import SweepConfig
from emergence_jax.sweep.jobs import Job, finetune_recipe, slug


class Preempted(Exception):
    """A finetuning job saved its state on SIGTERM; run the sweep again to resume it."""


class JobRunner:
    """Runs jobs of one sweep; `output` is the sweep's `SweepOutput` (read for known losses);
    `work_dir` holds finetuning runs (shared by all processes of a multi-host sweep)."""

    def __init__(self, config: SweepConfig, work_dir: Path, output, *, progress: bool = True):
        self.config = config
        self.work = work_dir
        self.output = output
        self.progress = progress
        self._recipe = None
        self._losses: dict[str, dict] = {}
        self._loaded = None  # (model path, LoadedModel) of the last evaluated checkpoint
        self._mesh = None

    def job_dir(self, job: Job) -> Path:
        return self.work / "jobs" / job.id

    @property
    def mesh(self):
        """The evaluation mesh (`evaluate.mesh`, e.g. `fsdp=-1`; see `sharding.parse_mesh`)."""
        if self._mesh is None:
            from emergence_jax.sharding import parse_mesh

            self._mesh = parse_mesh(self.config.evaluate.mesh)
        return self._mesh

    def run(self, job: Job) -> list[dict]:
        """Run `job`; returns its results rows (none for a pretraining-loss job)."""
        if job.stage == "pretrain_loss":
            self._losses[job.model.name] = self._pretrain_loss(job)
            return []
        rows = self._fewshot(job) if job.stage == "fewshot" else self._finetune(job)
        return [self._with_model_columns(job, row) for row in rows]

    def loss_payload(self, job: Job) -> dict:
        """The pretraining-loss payload of the job's model: measured by this run, or read from the
        output where an earlier run published it."""
        if job.model.name not in self._losses:
            self._losses[job.model.name] = self.output.read_json(self.output.loss_file(slug(job.model.name)))
        return self._losses[job.model.name]

    def _pretrain_loss_of(self, job: Job) -> tuple[float, str | None]:
        if job.model.pretrain_loss is not None:
            return float(job.model.pretrain_loss), None
        payload = self.loss_payload(job)
        return float(payload["pretrain_loss"]), payload.get("loss_corpus")

    def _load(self, job: Job):
        """The job's checkpoint on the evaluation mesh, kept for the next job of the same model."""
        import jax

        from emergence_jax.evaluate.loading import load_model_for_evaluation

        if self._loaded is None or self._loaded[0] != job.model.path:
            self._loaded = None
            settings = self.config.evaluate
            loaded = load_model_for_evaluation(
                job.model.path, compute_dtype=settings.compute_dtype, param_dtype=settings.param_dtype, mesh=self.mesh,
                progress=self.progress and jax.process_index() == 0,
            )
            self._loaded = (job.model.path, loaded)
        return self._loaded[1]

    def _pretrain_loss(self, job: Job) -> dict:
        from emergence_jax.evaluate.pretrain_loss_command import measure_pretrain_loss

        corpus = self.config.loss_corpus
        return measure_pretrain_loss(
            self._load(job), corpus.paths, model_id=job.model.name, text_field=corpus.text_field, data_dir=corpus.data_dir or None,
            split=corpus.split, sequence_length=corpus.sequence_length, max_tokens=corpus.max_tokens, batch_size=corpus.batch_size,
            progress=self.progress,
        )

    def _fewshot(self, job: Job) -> list[dict]:
        from emergence_jax.evaluate.command import evaluate_checkpoint

        settings = self.config.evaluate
        loss, corpus = self._pretrain_loss_of(job)
        return evaluate_checkpoint(
            self._load(job), None, job.task.name, pretrain_loss=loss, loss_corpus=corpus, model_id=job.model.name,
            shots=job.shots, seed=settings.seed, data_dir=self.config.data_dir, split=job.task.split or None, limit=job.task.limit,
            batch_size=settings.batch_size, max_new_tokens=settings.max_new_tokens, train_examples=0, progress=self.progress,
        )

    def finetune_config(self, job: Job):
        """The job's `FinetuneConfig`: the sweep's recipe with this job's model, task, D, seed and
        folders filled in."""
        if self._recipe is None:
            self._recipe = finetune_recipe(self.config)
        recipe = self._recipe
        loss, _ = self._pretrain_loss_of(job)
        return dataclasses.replace(
            recipe,
            run_dir=str(self.job_dir(job) / "run"),
            distributed=False,
            model=dataclasses.replace(recipe.model, path=job.model.path, preset="", tokenizer="", name=job.model.name, pretrain_loss=loss),
            data=dataclasses.replace(recipe.data, task=job.task.name, data_dir=self.config.data_dir, num_examples=job.train_examples, subset_seed=job.seed),
            eval=dataclasses.replace(recipe.eval, enabled=True, split=job.task.split, shots=job.task.finetuned_shots, limit=job.task.limit),
        )

    def _finetune(self, job: Job) -> list[dict]:
        from emergence_jax.train.command import run_finetune

        self._loaded = None  # free the evaluation copy of the checkpoint before training
        result = run_finetune(self.finetune_config(job), progress=self.progress)
        if result.preempted:
            raise Preempted(job.id)
        _, corpus = self._pretrain_loss_of(job)
        return [{**row, "loss_corpus": corpus} if corpus else row for row in result.rows]

    def clean_up(self, job: Job) -> None:
        """After a finetuning job is done: delete its exported weights and training checkpoints (a
        few times the model's size each) unless `finetune.keep_outputs` (process 0 only: the
        folder is shared)."""
        import jax

        if job.stage != "finetune" or self.config.finetune.keep_outputs or jax.process_index() != 0:
            return
        run_dir = self.job_dir(job) / "run"
        for name in ("model", "checkpoints"):
            shutil.rmtree(run_dir / name, ignore_errors=True)

    def _with_model_columns(self, job: Job, row: dict) -> dict:
        """`row` plus the checkpoint's params / tokens / flops, where known."""
        extra = {key: getattr(job.model, key) for key in ("params", "tokens", "flops") if getattr(job.model, key) is not None}
        return {**extra, **row}
