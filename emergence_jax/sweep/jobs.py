"""A sweep config expanded into jobs, and every check that needs no compute.

Jobs run stage by stage: every missing pretraining loss first (the other stages copy it into their
rows), then few-shot evaluations, then finetuning runs (each evaluates its finetuned weights).
The order is a pure function of the config, so every worker of a pod walks the same list.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.sweep.config import SweepConfig, SweepModel, SweepTask


@dataclasses.dataclass(frozen=True)
class Job:
    """One unit of work whose completion is recorded by a done marker named after `id`."""

    stage: str  # pretrain_loss | fewshot | finetune
    model: SweepModel
    task: SweepTask | None = None
    shots: int = 0  # few-shot jobs: in-context examples
    train_examples: int = 0  # finetune jobs: D
    seed: int = 0  # finetune jobs: subset seed

    @property
    def id(self) -> str:
        model = slug(self.model.name)
        if self.stage == "pretrain_loss":
            return f"pretrain_loss/{model}"
        if self.stage == "fewshot":
            return f"fewshot/{model}/{self.task.name}/{self.shots}shot"
        return f"finetune/{model}/{self.task.name}/D{self.train_examples}_seed{self.seed}"

    @property
    def label(self) -> str:
        """A short human-readable description for the progress table."""
        if self.stage == "pretrain_loss":
            return f"{self.model.name} pretraining loss"
        if self.stage == "fewshot":
            return f"{self.model.name} {self.task.name} {self.shots}-shot"
        return f"{self.model.name} {self.task.name} D={self.train_examples} seed={self.seed}"


def slug(name: str) -> str:
    """`name` with everything but letters, digits and ._@+- replaced by '_' (safe as a path part)."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", name)


def expand_jobs(config: SweepConfig) -> list[Job]:
    """Every job of the grid, in run order (see the module docstring)."""
    from emergence_jax.data.tasks import task_spec

    jobs: list[Job] = []
    if "pretrain_loss" in config.stages:
        jobs += [Job("pretrain_loss", model) for model in config.models if model.pretrain_loss is None]
    if "fewshot" in config.stages:
        for model in config.models:
            for task in config.tasks:
                for shots in task.shots or (task_spec(task.name).default_shots,):
                    jobs.append(Job("fewshot", model, task, shots=shots))
    if "finetune" in config.stages:
        for model in config.models:
            for task in config.tasks:
                for train_examples in task.train_examples:
                    for seed in task.seeds:
                        jobs.append(Job("finetune", model, task, train_examples=train_examples, seed=seed))
    return jobs


def validate_sweep(config: SweepConfig, source: str, *, check_folders: bool = True) -> list[Job]:
    """Check the config without loading weights or data; returns the jobs. Raises `UserError`.
    With `check_folders=False` (planning with --dry-run away from the checkpoints) a missing model
    folder is reported on stdout instead."""
    from emergence_jax.checkpoints.hub import is_hub_spec
    from emergence_jax.data.tasks import TASKS
    from emergence_jax.sharding import parse_mesh

    if not config.models:
        raise UserError(f"{source}: models is empty; list checkpoints as {{name, path}} entries")
    if not config.tasks:
        raise UserError(f"{source}: tasks is empty; list tasks as {{name, shots, train_examples}} entries")
    if Path(config.records).suffix.lower() not in (".csv", ".jsonl") or "/" in config.records:
        raise UserError(f"{source}: records {config.records!r} must be a .csv or .jsonl file name inside output_dir")
    names = [model.name for model in config.models]
    for index, model in enumerate(config.models):
        if not model.name or not model.path:
            raise UserError(f"{source}: models[{index}] needs both name (the checkpoint id) and path (its folder)")
        if names.count(model.name) > 1:
            raise UserError(f"{source}: models[{index}].name {model.name!r} appears twice; checkpoint ids must be unique")
        if not is_hub_spec(model.path) and not (Path(model.path) / "config.json").is_file():
            problem = f"{source}: models[{index}].path {model.path}: no config.json there; point it at a Hugging Face checkpoint folder"
            if check_folders:
                raise UserError(problem)
            print(f"warning: {problem}")
        if model.pretrain_loss is None and "pretrain_loss" not in config.stages:
            raise UserError(f"{source}: models[{index}] ({model.name}) has no pretrain_loss and the pretrain_loss stage is off; give one or add the stage")
    for index, task in enumerate(config.tasks):
        if task.name not in TASKS:
            raise UserError(f"{source}: tasks[{index}].name {task.name!r} is unknown; choose one of {', '.join(sorted(TASKS))}")
        if any(d < 1 for d in task.train_examples):
            raise UserError(f"{source}: tasks[{index}].train_examples must be positive numbers of examples")
        if task.limit is not None and task.limit < 1:
            raise UserError(f"{source}: tasks[{index}].limit must be a positive number of examples or null")
    if config.work_dir:
        from emergence_jax.sweep.storage import require_filesystem_path

        require_filesystem_path(config.work_dir, f"{source}: work_dir")
    try:
        parse_mesh(config.evaluate.mesh)
    except UserError as err:
        raise UserError(f"{source}: evaluate.mesh {config.evaluate.mesh!r}: {err}") from None
    jobs = expand_jobs(config)
    if any(job.stage == "pretrain_loss" for job in jobs) and not config.loss_corpus.paths:
        raise UserError(f"{source}: loss_corpus.paths is empty but some models need their pretraining loss measured")
    recipe = finetune_recipe(config) if any(job.stage == "finetune" for job in jobs) else None
    from emergence_jax.bench.memory import check_memory_requirements

    # A model that would not fit its hardware (requirements.memory, from `bench memory`) stops here.
    check_memory_requirements(config, source, recipe)
    return jobs


def finetune_recipe(config: SweepConfig):
    """The `FinetuneConfig` every finetuning job starts from (the file plus the sweep's overrides)."""
    from emergence_jax.config import load_config
    from emergence_jax.train.config import FinetuneConfig

    if not Path(config.finetune.config).is_file():
        raise UserError(f"finetune.config {config.finetune.config}: no such file; point it at a configs/finetune_*.yaml")
    return load_config(FinetuneConfig, config.finetune.config, config.finetune.set)


def job_settings(job: Job, config: SweepConfig, recipe=None) -> dict:
    """Everything that decides a job's results besides where files live: stored in its done marker
    so that a later run with different settings does not take the old results for its own."""
    from emergence_jax.config import config_to_dict

    evaluate = config.evaluate
    settings: dict = {"job": job.id}
    if evaluate.param_dtype != "float32":  # recorded only when not the default, so older markers still match
        settings["param_dtype"] = evaluate.param_dtype
    if job.stage == "pretrain_loss":
        corpus = config_to_dict(config.loss_corpus)
        corpus.pop("data_dir")
        corpus.pop("batch_size")
        return {**settings, "loss_corpus": corpus, "compute_dtype": evaluate.compute_dtype}
    task = {"limit": job.task.limit, "split": job.task.split}
    if job.model.pretrain_loss is not None:
        settings["pretrain_loss"] = job.model.pretrain_loss
    if job.stage == "fewshot":
        return {**settings, **task, "seed": evaluate.seed, "compute_dtype": evaluate.compute_dtype, "max_new_tokens": evaluate.max_new_tokens}
    finetune = config_to_dict(recipe)
    # Where files live, and model.scan_layers (the same numbers, laid out for a scan), decide no results.
    for section, key in (("model", "path"), ("model", "tokenizer"), ("model", "scan_layers"), ("data", "data_dir"), ("eval", "records")):
        finetune[section].pop(key)
    for key in ("run_dir", "distributed"):
        finetune.pop(key)
    return {**settings, **task, "finetuned_shots": list(job.task.finetuned_shots), "finetune": finetune}
