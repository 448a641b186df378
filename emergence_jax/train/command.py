"""`emergence-jax finetune --config configs/finetune_*.yaml [--set key=value ...]`.

Checks the whole config first (unknown keys, model source, mesh against the devices, batch against
data parallelism, LoRA targets against the model's layers), so a bad config fails in seconds with
one line. Then: resolved config to `run_dir/config.yaml`, finetune (resuming from
`run_dir/checkpoints` if present), merge LoRA adapters, export the finetuned weights with the
tokenizer to `run_dir/model` in Hugging Face format (`checkpoint.export_merged`), evaluate the
finetuned model in memory, still sharded (`evaluate.command.evaluate_checkpoint`), and append its
results rows (with `train_examples = D`, `seed` = the subset seed) to `eval.records`.
`run_finetune` is the same job as a library function returning the rows (sweeps call it).

Multi-host (`distributed: true`): every process runs the same command; only process 0 writes the
config, metrics, exported weights, tokenizer files and results rows, to paths all hosts share.
Exit code 143 means the run was preempted (SIGTERM) after saving; run the same command again.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from emergence_jax.errors import UserError

PREEMPTED_EXIT_CODE = 143
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="finetuning config (YAML), e.g. configs/finetune_lora.yaml")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.learning_rate=3e-4 (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to run_dir)")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.config import load_config
    from emergence_jax.train.config import FinetuneConfig

    config = load_config(FinetuneConfig, args.config, args.set)
    return finetune(config, progress=not args.no_progress)


@dataclasses.dataclass
class FinetuneResult:
    """How a finetuning job ended: preempted (rerun to resume) or done, with its results rows."""

    preempted: bool
    steps_done: int
    final_loss: float
    rows: list[dict]


def finetune(config, *, progress: bool = True) -> int:
    """Run one finetuning job from a resolved `FinetuneConfig`, appending its rows to
    `eval.records` (process 0); returns the exit code."""
    from emergence_jax.distributed import is_writer
    from emergence_jax.records import append_records

    result = run_finetune(config, progress=progress)
    run_dir = Path(config.run_dir)
    if result.preempted:
        if is_writer():
            print(f"preempted at step {result.steps_done}; checkpoint saved in {run_dir / 'checkpoints'}; rerun to resume")
        return PREEMPTED_EXIT_CODE
    if is_writer():
        print(f"finetuned {result.steps_done} steps; final loss {result.final_loss:.4f}")
        if result.rows:
            append_records(records_path(config), result.rows)
    return 0


def run_finetune(config, *, progress: bool = True) -> FinetuneResult:
    """Finetune (or resume), export when `checkpoint.export_merged`, and evaluate the finetuned
    model in memory when `eval.enabled`; returns the rows, written nowhere. Every process of a
    multi-host job calls it with the same config."""
    from emergence_jax.config import save_config
    from emergence_jax.distributed import initialize, is_writer
    from emergence_jax.train.loop import run_finetuning
    from emergence_jax.train.lora import merge_lora

    if config.distributed:
        initialize()
    mesh, model_config = validate(config)
    run_dir = Path(config.run_dir)
    if is_writer():
        save_config(config, run_dir / "config.yaml")
    model, tokenizer = _load_model_and_tokenizer(config, model_config, mesh)
    examples = _finetune_examples(config, tokenizer)
    outcome = run_finetuning(
        config, model, examples, mesh=mesh, run_dir=run_dir, pad_id=tokenizer.pad_id or 0, progress=progress
    )
    final_loss = outcome.last_metrics.get("loss", float("nan"))
    if outcome.preempted:
        return FinetuneResult(True, outcome.steps_done, final_loss, [])
    model = merge_lora(outcome.training.model())
    if config.checkpoint.export_merged:
        export_model(model, config, run_dir / "model")
    rows = evaluate_finetuned(model, tokenizer, config, mesh, progress=progress) if config.eval.enabled else []
    return FinetuneResult(False, outcome.steps_done, final_loss, rows)


def records_path(config) -> Path:
    """`eval.records`, relative to `run_dir` unless absolute."""
    records = Path(config.eval.records)
    return records if records.is_absolute() else Path(config.run_dir) / records


def validate(config):
    """Every config check that needs no weights and no compute; returns (mesh, model config)."""
    from emergence_jax.models import abstract_model
    from emergence_jax.sharding import make_mesh
    from emergence_jax.train.lora import lora_target_paths
    from emergence_jax.train.step import data_parallel_size

    from emergence_jax.sweep.storage import require_filesystem_path

    require_filesystem_path(config.run_dir, "run_dir")
    model_config = _model_config(config)
    mesh = make_mesh(config.mesh.data, config.mesh.fsdp, config.mesh.tensor)
    optim = config.optim
    if optim.batch_size < 1 or optim.accumulation_steps < 1 or optim.batch_size % optim.accumulation_steps:
        raise UserError(f"optim.batch_size {optim.batch_size} must be a positive multiple of optim.accumulation_steps {optim.accumulation_steps}")
    micro, parallel = optim.batch_size // optim.accumulation_steps, data_parallel_size(mesh)
    if micro % parallel:
        raise UserError(
            f"optim.batch_size / optim.accumulation_steps = {micro} is not divisible by the data parallelism {parallel} "
            f"(mesh.data x mesh.fsdp on {len(mesh.devices.flat)} devices); change optim.batch_size or the mesh"
        )
    if config.lora.enabled:
        lora_target_paths(abstract_model(model_config), config.lora.targets)
    if not config.data.task:
        raise UserError("data.task is required, e.g. --set data.task=commonsense_qa")
    if not config.data.data_dir:
        raise UserError("data.data_dir is required: the TFDS data folder prepared by `emergence-jax prepare-data`")
    from emergence_jax.data.tasks import task_spec

    task_spec(config.data.task)
    if config.eval.enabled and Path(config.eval.records).suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"eval.records {config.eval.records}: results are .csv or .jsonl files")
    if config.eval.enabled and config.model.pretrain_loss is None:
        raise UserError("model.pretrain_loss is required for results rows (nats/token), or set eval.enabled=false")
    return mesh, model_config


def _model_config(config):
    from emergence_jax.checkpoints import read_hf_config
    from emergence_jax.models.presets import preset

    model = config.model
    if bool(model.path) == bool(model.preset):
        raise UserError("model: set exactly one of model.path (a Hugging Face folder) or model.preset")
    if model.preset:
        if not model.tokenizer:
            raise UserError("model.tokenizer is required with model.preset (a folder with tokenizer.json or tokenizer.model)")
        return preset(model.preset)
    folder = model_folder(config)
    if not (folder / "config.json").is_file():
        raise UserError(f"model.path {model.path}: no config.json there; point it at a Hugging Face checkpoint folder or hf://ORG/NAME@REVISION")
    return read_hf_config(folder)


def model_folder(config) -> Path:
    """The local folder of `model.path` (an `hf://` spec resolves to its snapshot in the HF cache)."""
    from emergence_jax.checkpoints.hub import resolve_model_path

    return resolve_model_path(config.model.path)


def _load_model_and_tokenizer(config, model_config, mesh):
    import jax.numpy as jnp

    from emergence_jax.checkpoints import load_hf_model
    from emergence_jax.checkpoints.tokenizer import load_tokenizer
    from emergence_jax.distributed import is_writer
    from emergence_jax.models import build_model

    dtype = getattr(jnp, config.model.compute_dtype)
    if config.model.path:
        model = load_hf_model(model_folder(config), dtype=dtype, param_dtype=jnp.float32, mesh=mesh, progress=is_writer())
    else:
        model = build_model(model_config, dtype=dtype, param_dtype=jnp.float32, seed=config.seed, mesh=mesh)
    if config.model.scan_layers:
        from emergence_jax.models.stacking import stack_layers

        model = stack_layers(model)  # checkpoints hold per-layer tensors; the export unstacks them again
    return model, load_tokenizer(tokenizer_folder(config))


def tokenizer_folder(config) -> Path:
    from emergence_jax.checkpoints.hub import resolve_model_path

    return resolve_model_path(config.model.tokenizer) if config.model.tokenizer else model_folder(config)


def _finetune_examples(config, tokenizer):
    from emergence_jax.data.tasks import finetune_examples
    from emergence_jax.train.batches import tokenize_examples

    data = config.data
    examples = finetune_examples(data.task, data_dir=data.data_dir, num_examples=data.num_examples, seed=data.subset_seed)
    return tokenize_examples(examples, tokenizer, max_length=data.max_length)


def export_model(model, config, folder: Path) -> None:
    """Write the (LoRA-merged) model's weights + tokenizer files as a Hugging Face folder. Every
    process calls it (the export gathers tensors collectively); only process 0 writes, so
    `folder` must be one all hosts can read (`gs://…` or a shared filesystem)."""
    from etils import epath

    from emergence_jax.checkpoints import save_hf_model
    from emergence_jax.distributed import barrier, is_writer

    save_hf_model(model, folder, progress=is_writer())
    if is_writer():
        tokenizer_dir = tokenizer_folder(config)
        for name in TOKENIZER_FILES:
            if (tokenizer_dir / name).is_file():
                epath.Path(tokenizer_dir / name).copy(epath.Path(folder) / name, overwrite=True)
    barrier("emergence_jax.export_model")


def model_id(config) -> str:
    from emergence_jax.evaluate.loading import default_model_id

    if config.model.name:
        return config.model.name
    return default_model_id(config.model.path) if config.model.path else config.model.preset


def evaluate_finetuned(model, tokenizer, config, mesh, *, progress: bool = True) -> list[dict]:
    """Results rows of the finetuned `model` (in memory, on `mesh`) at each of `eval.shots`."""
    from emergence_jax.evaluate.command import evaluate_checkpoint
    from emergence_jax.evaluate.loading import LoadedModel

    loaded = LoadedModel.from_model(model, tokenizer, model_id=model_id(config), mesh=mesh)
    rows = []
    for shots in config.eval.shots:
        rows += evaluate_checkpoint(
            loaded, None, config.data.task, pretrain_loss=config.model.pretrain_loss, model_id=loaded.model_id,
            shots=shots, seed=config.data.subset_seed, data_dir=config.data.data_dir, split=config.eval.split or None,
            limit=config.eval.limit, train_examples=config.data.num_examples, progress=progress,
        )
    return rows
