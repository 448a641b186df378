"""`emergence-jax finetune --config configs/finetune_*.yaml [--set key=value ...]`.

Checks the whole config first (unknown keys, model source, mesh against the devices, batch against
data parallelism, LoRA targets against the model's layers), so a bad config fails in seconds with
one line. Then: resolved config to `run_dir/config.yaml`, finetune (resuming from
`run_dir/checkpoints` if present), export the finetuned (LoRA-merged) weights with the tokenizer to
`run_dir/model` in Hugging Face format, evaluate them through `emergence-jax evaluate` and append
its results rows (with `train_examples = D`, `seed` = the subset seed) to `eval.records`.
Exit code 143 means the run was preempted (SIGTERM) after saving; run the same command again.
"""

from __future__ import annotations

import argparse
import shutil
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


def finetune(config, *, progress: bool = True) -> int:
    """Run one finetuning job from a resolved `FinetuneConfig`; returns the exit code."""
    import jax

    from emergence_jax.config import save_config
    from emergence_jax.train.loop import run_finetuning

    if config.distributed:
        jax.distributed.initialize()
    mesh, model_config = validate(config)
    run_dir = Path(config.run_dir)
    save_config(config, run_dir / "config.yaml")
    model, tokenizer = _load_model_and_tokenizer(config, model_config, mesh)
    examples = _finetune_examples(config, tokenizer)
    outcome = run_finetuning(
        config, model, examples, mesh=mesh, run_dir=run_dir, pad_id=tokenizer.pad_id or 0, progress=progress
    )
    if outcome.preempted:
        print(f"preempted at step {outcome.steps_done}; checkpoint saved in {run_dir / 'checkpoints'}; rerun to resume")
        return PREEMPTED_EXIT_CODE
    print(f"finetuned {outcome.steps_done} steps; final loss {outcome.last_metrics.get('loss', float('nan')):.4f}")
    export_dir = run_dir / "model"
    if config.checkpoint.export_merged or config.eval.enabled:
        export_model(outcome.training.model(), config, export_dir)
    if config.eval.enabled:
        evaluate_export(config, export_dir, progress=progress)
    return 0


def validate(config):
    """Every config check that needs no weights and no compute; returns (mesh, model config)."""
    from emergence_jax.models import abstract_model
    from emergence_jax.sharding import make_mesh
    from emergence_jax.train.lora import lora_target_paths
    from emergence_jax.train.step import data_parallel_size

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
    if not (Path(model.path) / "config.json").is_file():
        raise UserError(f"model.path {model.path}: no config.json there; point it at a Hugging Face checkpoint folder")
    return read_hf_config(model.path)


def _load_model_and_tokenizer(config, model_config, mesh):
    import jax.numpy as jnp

    from emergence_jax.checkpoints import load_hf_model
    from emergence_jax.checkpoints.tokenizer import load_tokenizer
    from emergence_jax.models import build_model

    dtype = getattr(jnp, config.model.compute_dtype)
    if config.model.path:
        model = load_hf_model(config.model.path, dtype=dtype, param_dtype=jnp.float32, mesh=mesh)
    else:
        model = build_model(model_config, dtype=dtype, param_dtype=jnp.float32, seed=config.seed, mesh=mesh)
    return model, load_tokenizer(config.model.tokenizer or config.model.path)


def _finetune_examples(config, tokenizer):
    from emergence_jax.data.tasks import finetune_examples
    from emergence_jax.train.batches import tokenize_examples

    data = config.data
    examples = finetune_examples(data.task, data_dir=data.data_dir, num_examples=data.num_examples, seed=data.subset_seed)
    return tokenize_examples(examples, tokenizer, max_length=data.max_length)


def export_model(model, config, folder: Path) -> None:
    """Merge LoRA adapters (if any) and write weights + tokenizer files as a Hugging Face folder."""
    from emergence_jax.checkpoints import save_hf_model
    from emergence_jax.train.lora import merge_lora

    merge_lora(model)
    save_hf_model(model, folder)
    tokenizer_dir = Path(config.model.tokenizer or config.model.path)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, folder / name)


def model_id(config) -> str:
    if config.model.name:
        return config.model.name
    return Path(config.model.path).resolve().name if config.model.path else config.model.preset


def evaluate_export(config, folder: Path, *, progress: bool = True) -> None:
    """Evaluate the exported model with `emergence-jax evaluate`, appending rows to `eval.records`."""
    from emergence_jax.evaluate import command as evaluate_command

    records = Path(config.eval.records)
    if not records.is_absolute():
        records = Path(config.run_dir) / records
    parser = argparse.ArgumentParser()
    evaluate_command.add_arguments(parser)
    for shots in config.eval.shots:
        argv = [
            "--model", str(folder), "--task", config.data.task, "--out", str(records),
            "--pretrain-loss", repr(config.model.pretrain_loss), "--shots", str(shots),
            "--data-dir", config.data.data_dir, "--seed", str(config.data.subset_seed),
            "--model-id", model_id(config), "--train-examples", str(config.data.num_examples),
            "--compute-dtype", config.model.compute_dtype,
        ]
        if config.eval.split:
            argv += ["--split", config.eval.split]
        if config.eval.limit is not None:
            argv += ["--limit", str(config.eval.limit)]
        evaluate_command.run(parser.parse_args(argv))
