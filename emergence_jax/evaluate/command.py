"""`emergence-jax evaluate`: few-shot (or finetuned) accuracy of one checkpoint on one task.

Appends results-record rows to `--out` (CSV or JSONL), one per metric, each with `model`,
`pretrain_loss`, `train_examples`, `task`, `shots`, `seed`, `n_eval`, `chance`, `metric` and
`accuracy` (the metric's value):

- multiple choice: `accuracy` (with `brier`, `correct_prob` and `logprob`, the mean log-likelihood
  of the correct choice in nats) and `length_normalized_accuracy`;
- generation (GSM8K): `exact_match`;
- code (APPS): `strict_accuracy` (all test cases pass) and `test_case_accuracy`.

`evaluate_checkpoint` is the same evaluation as a library function on a model already in memory
(finetuning and sweeps call it on their sharded model). With `--mesh` the model is loaded straight
onto the mesh and batches are split over its data axes; in a multi-host job every process runs the
command and only process 0 appends the rows.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.io import read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from emergence_jax.evaluate.loading import add_device_arguments

    parser.add_argument("--model", required=True, help="checkpoint folder (Hugging Face config.json + safetensors + tokenizer)")
    parser.add_argument("--task", required=True, help="task name, e.g. mmlu, gsm8k, commonsense_qa, cola, apps")
    parser.add_argument("--out", required=True, help="results file to append rows to (.csv or .jsonl)")
    add_pretrain_loss_arguments(parser, required=True)
    parser.add_argument("--shots", type=int, default=None, help="in-context examples (default: the task's usual number)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder holding the task's prepared dataset")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the task's evaluation split)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the in-context examples")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass")
    parser.add_argument("--model-id", default=None, help="checkpoint id written to the rows (default: the model folder's name)")
    parser.add_argument("--train-examples", type=int, default=0, help="finetuning examples behind this checkpoint (0 = not finetuned)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="generation/code tasks: tokens to generate per prompt")
    add_device_arguments(parser)


def add_pretrain_loss_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """`--pretrain-loss NATS` or `--pretrain-loss-file FILE.json` (one of them when `required`)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--pretrain-loss", type=float, default=None, metavar="NATS", help="the checkpoint's pretraining loss, nats/token")
    group.add_argument("--pretrain-loss-file", default=None, metavar="FILE.json", help="the JSON file `emergence-jax pretrain-loss` wrote for this checkpoint")


def pretrain_loss_from_arguments(args: argparse.Namespace) -> tuple[float | None, str | None]:
    """(loss in nats/token, loss corpus name or None); (None, None) when neither flag was given."""
    if args.pretrain_loss_file is not None:
        loss, corpus = read_pretrain_loss_file(args.pretrain_loss_file)
    else:
        loss, corpus = args.pretrain_loss, None
    if loss is not None and not (math.isfinite(loss) and loss >= 0):
        raise UserError(f"pretrain loss {loss}: must be a finite number of nats/token >= 0 (from `emergence-jax pretrain-loss`)")
    return loss, corpus


def read_pretrain_loss_file(value: str) -> tuple[float, str | None]:
    """(loss in nats/token, corpus name or None) from the JSON file `pretrain-loss` wrote."""
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--pretrain-loss-file {value}: no such file; pass the JSON file `emergence-jax pretrain-loss` wrote")
    payload = read_json(path, what="pretrain-loss file")
    try:
        return float(payload["pretrain_loss"]), payload.get("loss_corpus")
    except (KeyError, TypeError, ValueError):
        raise UserError(f"--pretrain-loss-file {path}: expected a JSON object with a numeric 'pretrain_loss' (written by `emergence-jax pretrain-loss`)") from None


def metric_rows(base: dict, metrics: dict[str, float], *, headline: str, extras: dict[str, float] | None = None) -> list[dict]:
    """One results row per metric; the `headline` metric's row also carries `extras` (brier, ...)."""
    rows = []
    for name, value in metrics.items():
        row = {**base, "metric": name, "accuracy": value}
        if name == headline and extras:
            row.update(extras)
        rows.append(row)
    return rows


def check_results_file(out: str | Path, flag: str = "--out") -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"{flag} {out}: results are written as .csv or .jsonl; pick one of those suffixes")
    return out


def run(args: argparse.Namespace) -> int:
    import jax

    from emergence_jax.evaluate.loading import check_model_folder, load_model_for_evaluation, mesh_from_arguments
    from emergence_jax.records import append_records

    out = check_results_file(args.out)
    check_model_folder(args.model)
    pretrain_loss, loss_corpus = pretrain_loss_from_arguments(args)
    mesh = mesh_from_arguments(args)
    prompts, shots = task_prompts(args.task, shots=args.shots, seed=args.seed, data_dir=args.data_dir, split=args.split, limit=args.limit)
    loaded = load_model_for_evaluation(args.model, compute_dtype=args.compute_dtype, param_dtype=args.param_dtype, mesh=mesh)
    rows = evaluate_checkpoint(
        loaded, None, args.task, pretrain_loss=pretrain_loss, loss_corpus=loss_corpus, model_id=args.model_id or loaded.model_id,
        shots=shots, seed=args.seed, prompts=prompts, train_examples=args.train_examples, batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens, progress=True,
    )
    if jax.process_index() == 0:
        append_records(out, rows)
        summary = ", ".join(f"{r['metric']}={r['accuracy']:.4f}" for r in rows)
        print(f"{rows[0]['model']} {args.task} {shots}-shot on {rows[0]['n_eval']} examples: {summary} -> {out}")
    return 0


def task_prompts(task: str, *, shots: int | None, seed: int, data_dir: str | None, split: str | None = None, limit: int | None = None):
    """(evaluation prompts, shots used) of `task`, with its default shots and split where not given."""
    from emergence_jax.data import tasks

    if task not in tasks.TASKS:
        raise UserError(f"--task {task}: unknown task; choose one of {', '.join(sorted(tasks.TASKS))}")
    spec = tasks.TASKS[task]
    shots = spec.default_shots if shots is None else shots
    if shots < 0:
        raise UserError(f"--shots {shots}: must be 0 or more")
    if limit is not None and limit <= 0:
        raise UserError(f"--limit {limit}: must be a positive number of examples")
    split = split or spec.eval_split
    prompts = tasks.eval_prompts(task, data_dir=data_dir, split=split, shots=shots, seed=seed, limit=limit)
    if not prompts:
        raise UserError(f"--task {task}: no evaluation examples found; check --data-dir and --split")
    return prompts, shots


def evaluate_checkpoint(
    model,
    tokenizer,
    task: str,
    *,
    pretrain_loss: float,
    model_id: str,
    shots: int | None = None,
    seed: int = 0,
    data_dir: str | None = None,
    split: str | None = None,
    limit: int | None = None,
    prompts=None,
    train_examples: int = 0,
    loss_corpus: str | None = None,
    batch_size: int = 16,
    max_new_tokens: int = 256,
    mesh=None,
    progress: bool = False,
) -> list[dict]:
    """Results rows (one per metric) of `model` on `task`, written nowhere.

    `model` is a `CausalLM` in memory (sharded on `mesh`, or on one device when `mesh` is None)
    with its `tokenizer`, or a `LoadedModel` (then `tokenizer` and `mesh` come from it and its
    compiled scorer is reused). `pretrain_loss` is in nats/token. `prompts` (from `task_prompts`)
    skips reading the task's data again. Every process of a multi-host job must call this with the
    same arguments; each gets the same rows.
    """
    from emergence_jax.data import tasks
    from emergence_jax.evaluate.loading import LoadedModel

    if prompts is None:
        prompts, shots = task_prompts(task, shots=shots, seed=seed, data_dir=data_dir, split=split, limit=limit)
    spec = tasks.task_spec(task)
    shots = spec.default_shots if shots is None else shots
    loaded = model if isinstance(model, LoadedModel) else LoadedModel.from_model(model, tokenizer, model_id=model_id, mesh=mesh)
    if pretrain_loss is None:
        raise UserError("the checkpoint's pretraining loss is required for results rows (nats/token)")
    base = {
        "model": model_id,
        "pretrain_loss": float(pretrain_loss),
        "train_examples": int(train_examples),
        "task": task,
        "shots": shots,
        "seed": seed,
        "n_eval": len(prompts),
        "chance": spec.chance,
    }
    if loss_corpus:
        base["loss_corpus"] = loss_corpus
    return _evaluate(spec.kind, loaded, prompts, base, batch_size=batch_size, max_new_tokens=max_new_tokens, progress=progress)


def _evaluate(kind: str, loaded, prompts, base: dict, *, batch_size: int, max_new_tokens: int, progress: bool) -> list[dict]:
    import jax

    progress = progress and jax.process_index() == 0
    if kind == "multiple_choice":
        from emergence_jax.evaluate.multiple_choice import evaluate_multiple_choice, summarize_multiple_choice

        outcomes = evaluate_multiple_choice(
            loaded.scorer, loaded.tokenizer, prompts, max_length=loaded.max_length, batch_size=batch_size, progress=progress
        )
        summary = summarize_multiple_choice(outcomes)
        metrics = {k: summary[k] for k in ("accuracy", "length_normalized_accuracy")}
        extras = {k: summary[k] for k in ("brier", "correct_prob", "logprob")}
        return metric_rows(base, metrics, headline="accuracy", extras=extras)
    if kind == "generation":
        from emergence_jax.data.gsm8k_answers import extract_gsm8k_answer
        from emergence_jax.evaluate.generation import evaluate_generation, summarize_generation

        outcomes = evaluate_generation(
            loaded.model, loaded.tokenizer, prompts, extract_answer=extract_gsm8k_answer,
            max_new_tokens=max_new_tokens, max_length=loaded.max_length, batch_size=batch_size, mesh=loaded.mesh, progress=progress,
        )
        return metric_rows(base, summarize_generation(outcomes), headline="exact_match")
    if kind == "code":
        from emergence_jax.evaluate.programs import evaluate_programs, summarize_programs

        outcomes = evaluate_programs(
            loaded.model, loaded.tokenizer, prompts,
            max_new_tokens=max_new_tokens, max_length=loaded.max_length, batch_size=batch_size, mesh=loaded.mesh, progress=progress,
        )
        return metric_rows(base, summarize_programs(outcomes), headline="strict_accuracy")
    raise UserError(f"task kind {kind!r} has no evaluation; expected multiple_choice, generation or code")
