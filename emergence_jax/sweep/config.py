"""The sweep config schema (`configs/sweep_*.yaml`, `configs/paper/*.yaml`), read by
`emergence_jax.config.load_config`: which checkpoints, tasks, finetuning amounts D, subset seeds and
shots to run, and where the results go."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

STAGES = ("pretrain_loss", "fewshot", "finetune")


@dataclasses.dataclass(frozen=True)
class SweepModel:
    """One pretrained checkpoint (a Hugging Face folder on local disk)."""

    name: str = ""  # checkpoint id in results rows, e.g. open_llama_3b@step200000
    path: str = ""  # folder with config.json, *.safetensors (or PyTorch .bin) and tokenizer files
    pretrain_loss: float | None = None  # nats/token if already known; otherwise the pretrain_loss stage measures it
    params: float | None = None  # parameter count, copied into results rows (for L(N) fits)
    tokens: float | None = None  # pretraining tokens seen by this checkpoint, copied into results rows
    flops: float | None = None  # pretraining FLOPs of this checkpoint, copied into results rows (backtests by compute)


@dataclasses.dataclass(frozen=True)
class SweepTask:
    """One task: few-shot evaluation at `shots`, finetuning on each D in `train_examples` for every seed."""

    name: str = ""  # a task in emergence_jax.data.tasks.TASKS
    shots: tuple[int, ...] = ()  # few-shot evaluation shots; empty = the task's default
    train_examples: tuple[int, ...] = ()  # finetuning amounts D (examples); empty = no finetuning
    seeds: tuple[int, ...] = (0, 1)  # finetuning subsets per D (the paper uses two)
    finetuned_shots: tuple[int, ...] = (0,)  # shots when evaluating finetuned checkpoints
    limit: int | None = None  # evaluation examples; None = the whole split
    split: str = ""  # evaluation split; empty = the task's own


@dataclasses.dataclass(frozen=True)
class LossCorpus:
    """Held-out text for the pretraining loss (see `emergence-jax pretrain-loss`)."""

    paths: tuple[str, ...] = ()  # .txt / .jsonl files, folders, or one prepared TFDS dataset name
    text_field: str = "text"
    data_dir: str = ""  # TFDS data folder (for a TFDS corpus)
    split: str = "validation"
    sequence_length: int = 2049  # tokens per packed row
    max_tokens: int | None = None  # score at most this many tokens
    batch_size: int = 8


@dataclasses.dataclass(frozen=True)
class EvaluateSettings:
    """How few-shot and finetuned checkpoints are evaluated (see `emergence-jax evaluate`)."""

    batch_size: int = 16
    max_new_tokens: int = 256  # generation / code tasks
    compute_dtype: Literal["float32", "bfloat16"] = "bfloat16"
    param_dtype: Literal["float32", "bfloat16"] = "float32"  # dtype the weights are held in on the devices
    mesh: str = ""  # device mesh for evaluation, e.g. "fsdp=4,tensor=2" (see --mesh); empty = every device on fsdp
    seed: int = 0  # chooses the in-context examples of few-shot rows (their `seed` column)


@dataclasses.dataclass(frozen=True)
class FinetuneSettings:
    """The finetuning recipe: a `configs/finetune_*.yaml` file plus overrides; the sweep fills in the
    model, task, D, subset seed, run folder and evaluation for each job."""

    config: str = "configs/finetune_full.yaml"
    set: tuple[str, ...] = ()  # `key=value` overrides, as for `emergence-jax finetune --set`
    keep_outputs: bool = False  # keep each job's exported weights and Orbax checkpoints after it is done


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A grid of jobs and where its results go."""

    output_dir: str = "runs/sweep"  # local folder or gs://bucket/path: results, done markers, losses
    work_dir: str = ""  # filesystem folder (not gs://; a gcsfuse mount works) for finetuning runs and checkpoints (multi-process: one every worker shares); empty = output_dir/work (local) or ~/.cache/emergence_jax/sweeps/<name>
    records: str = "results.csv"  # results file (.csv or .jsonl) inside output_dir
    data_dir: str = "data/tfds"  # TFDS folder prepared by `emergence-jax prepare-data` (local or gs://)
    stages: tuple[Literal["pretrain_loss", "fewshot", "finetune"], ...] = STAGES
    models: tuple[SweepModel, ...] = ()
    tasks: tuple[SweepTask, ...] = ()
    loss_corpus: LossCorpus = dataclasses.field(default_factory=LossCorpus)
    evaluate: EvaluateSettings = dataclasses.field(default_factory=EvaluateSettings)
    finetune: FinetuneSettings = dataclasses.field(default_factory=FinetuneSettings)
    compilation_cache_dir: str = ""  # JAX persistent compilation cache, reused by every job and restart; empty = work_dir/jax_cache; "none" = off
    distributed: bool = False  # join a multi-process job first (emergence_jax.distributed.initialize; every worker of a pod runs the sweep)
    requirements: Any = None  # documentation only (not read): model folders, hardware, disk, expected hours
