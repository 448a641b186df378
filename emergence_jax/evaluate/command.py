"""`emergence-jax evaluate`: few-shot (or finetuned) accuracy of one checkpoint on one task.

Appends results-record rows to `--out` (CSV or JSONL), one per metric, each with `model`,
`pretrain_loss`, `train_examples`, `task`, `shots`, `seed`, `n_eval`, `chance`, `metric` and
`accuracy` (the metric's value):

- multiple choice: `accuracy` (with `brier`, `correct_prob` and `logprob`, the mean log-likelihood
  of the correct choice in nats) and `length_normalized_accuracy`;
- generation (GSM8K): `exact_match`;
- code (APPS): `strict_accuracy` (all test cases pass) and `test_case_accuracy`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emergence_jax.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (Hugging Face config.json + safetensors + tokenizer)")
    parser.add_argument("--task", required=True, help="task name, e.g. mmlu, gsm8k, commonsense_qa, cola, apps")
    parser.add_argument("--out", required=True, help="results file to append rows to (.csv or .jsonl)")
    parser.add_argument("--pretrain-loss", required=True, help="the checkpoint's pretraining loss: a number (nats/token) or the JSON file `emergence-jax pretrain-loss` wrote")
    parser.add_argument("--shots", type=int, default=None, help="in-context examples (default: the task's usual number)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder holding the task's prepared dataset")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the task's evaluation split)")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N examples")
    parser.add_argument("--seed", type=int, default=0, help="seed for choosing the in-context examples")
    parser.add_argument("--batch-size", type=int, default=16, help="rows per forward pass")
    parser.add_argument("--model-id", default=None, help="checkpoint id written to the rows (default: the model folder's name)")
    parser.add_argument("--train-examples", type=int, default=0, help="finetuning examples behind this checkpoint (0 = not finetuned)")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="generation/code tasks: tokens to generate per prompt")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32", help="activation dtype")


def read_pretrain_loss(value: str) -> tuple[float, str | None]:
    """(loss in nats/token, corpus name or None) from a number or a `pretrain-loss` JSON file."""
    try:
        return float(value), None
    except ValueError:
        pass
    path = Path(value)
    if not path.is_file():
        raise UserError(f"--pretrain-loss {value}: neither a number nor an existing JSON file from `emergence-jax pretrain-loss`")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return float(payload["pretrain_loss"]), payload.get("loss_corpus")
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"--pretrain-loss {path}: expected a JSON object with a numeric 'pretrain_loss' (written by `emergence-jax pretrain-loss`)") from None


def metric_rows(base: dict, metrics: dict[str, float], *, headline: str, extras: dict[str, float] | None = None) -> list[dict]:
    """One results row per metric; the `headline` metric's row also carries `extras` (brier, ...)."""
    rows = []
    for name, value in metrics.items():
        row = {**base, "metric": name, "accuracy": value}
        if name == headline and extras:
            row.update(extras)
        rows.append(row)
    return rows


def run(args: argparse.Namespace) -> int:
    from emergence_jax.data import tasks
    from emergence_jax.evaluate.loading import check_model_folder, load_model_for_evaluation
    from emergence_jax.records import append_records

    if args.task not in tasks.TASKS:
        raise UserError(f"--task {args.task}: unknown task; choose one of {', '.join(sorted(tasks.TASKS))}")
    spec = tasks.TASKS[args.task]
    shots = spec.default_shots if args.shots is None else args.shots
    if shots < 0:
        raise UserError(f"--shots {shots}: must be 0 or more")
    if args.limit is not None and args.limit <= 0:
        raise UserError(f"--limit {args.limit}: must be a positive number of examples")
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".jsonl"):
        raise UserError(f"--out {out}: results are written as .csv or .jsonl; pick one of those suffixes")
    check_model_folder(args.model)
    pretrain_loss, loss_corpus = read_pretrain_loss(args.pretrain_loss)
    split = spec.eval_split if args.split is None else args.split
    prompts = tasks.eval_prompts(args.task, data_dir=args.data_dir, split=split, shots=shots, seed=args.seed, limit=args.limit)
    if not prompts:
        raise UserError(f"--task {args.task}: no evaluation examples found; check --data-dir and --split")
    loaded = load_model_for_evaluation(args.model, compute_dtype=args.compute_dtype)
    base = {
        "model": args.model_id or loaded.model_id,
        "pretrain_loss": pretrain_loss,
        "train_examples": args.train_examples,
        "task": args.task,
        "shots": shots,
        "seed": args.seed,
        "n_eval": len(prompts),
        "chance": spec.chance,
    }
    if loss_corpus:
        base["loss_corpus"] = loss_corpus
    rows = _evaluate(spec.kind, loaded, prompts, args, base)
    append_records(out, rows)
    summary = ", ".join(f"{r['metric']}={r['accuracy']:.4f}" for r in rows)
    print(f"{base['model']} {args.task} {shots}-shot on {len(prompts)} examples: {summary} -> {out}")
    return 0


def _evaluate(kind: str, loaded, prompts, args: argparse.Namespace, base: dict) -> list[dict]:
    if kind == "multiple_choice":
        from emergence_jax.evaluate.multiple_choice import evaluate_multiple_choice, summarize_multiple_choice

        outcomes = evaluate_multiple_choice(
            loaded.scorer, loaded.tokenizer, prompts, max_length=loaded.max_length, batch_size=args.batch_size, progress=True
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
            max_new_tokens=args.max_new_tokens, max_length=loaded.max_length, batch_size=args.batch_size, progress=True,
        )
        return metric_rows(base, summarize_generation(outcomes), headline="exact_match")
    if kind == "code":
        from emergence_jax.evaluate.programs import evaluate_programs, summarize_programs

        outcomes = evaluate_programs(
            loaded.model, loaded.tokenizer, prompts,
            max_new_tokens=args.max_new_tokens, max_length=loaded.max_length, batch_size=args.batch_size, progress=True,
        )
        return metric_rows(base, summarize_programs(outcomes), headline="strict_accuracy")
    raise UserError(f"task kind {kind!r} has no evaluation; expected multiple_choice, generation or code")
