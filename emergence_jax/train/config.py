"""The finetuning config schema (`configs/finetune_*.yaml`), read by `emergence_jax.config.load_config`.

Every number is checked finite and, where declared with `bounded`, in range before any compute.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from emergence_jax.config import bounded


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Which pretrained checkpoint to finetune and how to run it."""

    path: str = ""  # Hugging Face checkpoint folder (safetensors + config.json + tokenizer)
    preset: str = ""  # alternatively a named size preset, randomly initialised (tests, benchmarks)
    tokenizer: str = ""  # tokenizer folder when it differs from `path`
    name: str = ""  # model id written to results records; default: the folder name or preset
    pretrain_loss: float | None = bounded(None, low=0.0)  # nats/token on the loss corpus, copied into results records
    compute_dtype: Literal["float32", "bfloat16"] = "bfloat16"  # master weights stay float32
    # per-layer rematerialisation in the backward pass: "dots" keeps only weight-matmul outputs, "full" only each
    # layer's input, "none" everything (fastest, most memory); true = "dots", false = "none"
    remat: Literal["none", "full", "dots"] | bool = False
    scan_layers: bool = False  # decoder layers as one jax.lax.scan (compile time independent of depth; with remat, one layer's gathered weights live at a time)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """The `D` finetuning examples and how they become batches."""

    task: str = ""
    data_dir: str = ""
    num_examples: int = bounded(1000, low=1)  # D; the subset for smaller D is a prefix of the one for larger D
    subset_seed: int = bounded(0, low=0)  # which random subset of D examples (the paper uses two per D)
    max_length: int = bounded(512, low=2, high=1 << 20)  # tokens per row; prompts are cut from the left to fit the target
    packing: bool = False  # concatenate examples into full rows instead of padding each
    epochs: int = bounded(1, low=1)  # passes over the D examples ...
    min_steps: int = bounded(0, low=0)  # ... raised so that small D still gets at least this many optimizer steps
    max_epochs: int = bounded(100, low=1)  # ... but never more passes than this


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with warmup then decay, global-norm clipping and gradient accumulation."""

    learning_rate: float = bounded(1e-5, low=0.0, high=1.0, low_open=True)  # peak
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_fraction: float = bounded(0.03, low=0.0, high=1.0)  # of total optimizer steps
    end_learning_rate_fraction: float = bounded(0.0, low=0.0, high=1.0)  # final learning rate / peak
    weight_decay: float = bounded(0.0, low=0.0)  # applied to matrices only, never to norms or biases
    b1: float = bounded(0.9, low=0.0, high=1.0, high_open=True)
    b2: float = bounded(0.95, low=0.0, high=1.0, high_open=True)
    eps: float = bounded(1e-8, low=0.0, low_open=True)
    max_grad_norm: float = bounded(1.0, low=0.0)  # 0 disables clipping
    batch_size: int = bounded(32, low=1, high=1 << 24)  # examples (rows when packing) per optimizer step, all devices together
    accumulation_steps: int = bounded(1, low=1)  # the batch is split into this many sequential microbatches


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh axis sizes; -1 means all the remaining devices."""

    data: int = bounded(1, low=1, also=(-1,))
    fsdp: int = bounded(-1, low=1, also=(-1,))
    tensor: int = bounded(1, low=1, also=(-1,))


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters on the named linear layers; only adapters are trained when enabled."""

    enabled: bool = False
    rank: int = bounded(8, low=1)
    alpha: float = bounded(16.0, low=0.0, low_open=True)  # the adapter output is scaled by alpha / rank
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")  # module names (path suffixes)


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """Orbax training-state checkpoints for preemption: periodic, on SIGTERM, keep the last N."""

    every_steps: int = bounded(200, low=0)  # 0 saves only on SIGTERM and at the end
    keep: int = bounded(2, low=1)
    export_merged: bool = True  # write the finetuned weights in Hugging Face format at the end


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation after training, through `emergence_jax.evaluate`, appended to results records."""

    enabled: bool = True
    split: str = ""  # empty: the task's own evaluation split
    shots: tuple[int, ...] = bounded((0,), low=0)
    limit: int | None = bounded(None, low=1)  # evaluation examples per task; None = all
    records: str = "records.jsonl"  # relative to run_dir unless absolute; rows' `seed` = data.subset_seed


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """One finetuning run: a checkpoint, D examples of a task, the optimizer, mesh and outputs."""

    run_dir: str = "runs/finetune"
    seed: int = bounded(0, low=0)  # data order and any randomness in training
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    log_every_steps: int = bounded(10, low=1)
    distributed: bool = False  # call jax.distributed.initialize() first (multi-host TPU/GPU)
