"""`emergence-jax pass-until`: PassUntil on a checkpoint, with a model-backed sampler and verifiers.

- `ModelSampler` draws temperature-1 samples through `emergence_jax.models.sampling.generate`
  (one jitted prefill + KV-cache decode loop) in fixed-size batches, so every round reuses the same
  compiled program; completions are cut at EOS and at the prompt's first stop sequence.
- Verifiers: `exact_answer_verifier` (GSM8K: the extracted final number equals the reference's),
  `exact_string_verifier` (the completion is exactly the reference; with EOS cutting this means
  "the sampled continuation was the reference followed by EOS", whose probability teacher forcing
  gives exactly) and `program_verifier` (the program passes every test case in the sandbox).

The loop, estimates and resumable state are in `emergence_jax.evaluate.pass_until`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.evaluate.generation import encode_prompt, generate_tokens, prompt_budget, truncate_at_stop
from emergence_jax.evaluate.pass_until import Verifier


class ModelSampler:
    """Samples completions from a model with the KV cache, `batch_size` rows per `generate` call.

    `max_length` is the model's context (tokens): prompts lose tokens from the left so prompt plus
    `max_new_tokens` fits. Batching is `generation.generate_tokens`: the last batch of a call is
    filled up with repeats of its last row, so `generate` compiles once per prompt-length bucket;
    with a `mesh` (the model's), the rows are split over its data axes, and on a multi-host mesh
    each host samples its share and every host gets all completions.
    """

    def __init__(self, model, tokenizer, *, max_new_tokens: int, max_length: int, batch_size: int = 256, temperature: float = 1.0, add_bos: bool = True, mesh=None):
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.max_length = max_length
        self.batch_size = batch_size
        self.temperature = temperature
        self.add_bos = add_bos
        self.mesh = mesh
        self._budget = prompt_budget(max_length, max_new_tokens)
        self._encoded: dict[str, list[int]] = {}
        self._decoded: dict[tuple[int, ...], str] = {}

    def encode(self, context: str) -> list[int]:
        """Prompt token ids exactly as sampling feeds them (BOS, left-truncated)."""
        if context not in self._encoded:
            self._encoded[context] = encode_prompt(self.tokenizer, context, self._budget, add_bos=self.add_bos)
        return self._encoded[context]

    def sample(self, prompts: Sequence[Any], n: int, rng: np.random.Generator) -> list[list[str]]:
        import jax

        rows = [self.encode(p.context) for p in prompts for _ in range(n)]
        new_tokens = generate_tokens(
            self.model, rows, max_new_tokens=self.max_new_tokens, batch_size=self.batch_size, eos_id=self.tokenizer.eos_id,
            pad_id=self.tokenizer.pad_id, temperature=self.temperature, key=jax.random.key(int(rng.integers(2**63 - 1))), mesh=self.mesh,
        )
        completions = [self._text(tokens) for tokens in new_tokens]
        return [[truncate_at_stop(c, p.stop) for c in completions[i * n : (i + 1) * n]] for i, p in enumerate(prompts)]

    def _text(self, tokens: list[int]) -> str:
        """The decoded text of new tokens (already cut at EOS), memoised: samples repeat."""
        key = tuple(tokens)
        if key not in self._decoded:
            self._decoded[key] = self.tokenizer.decode(tokens)
        return self._decoded[key]


def exact_string_verifier(prompt, completion: str) -> bool:
    """Pass iff the completion is exactly `prompt.reference`."""
    return completion == prompt.reference


def exact_answer_verifier(extract_answer: Callable[[str], str | None] | None = None) -> Verifier:
    """Pass iff the answer extracted from the completion equals the reference's (GSM8K by default)."""
    from emergence_jax.evaluate.generation import score_exact_match

    if extract_answer is None:
        from emergence_jax.data.gsm8k_answers import extract_gsm8k_answer as extract_answer

    def verify(prompt, completion: str) -> bool:
        return score_exact_match([completion], [prompt], extract_answer)[0].correct

    return verify


def program_verifier(*, time_limit_s: float = 4.0, memory_limit_mb: int = 512) -> Verifier:
    """Pass iff the program in the completion passes every test case in the sandbox (memoised:
    small models repeat themselves, and each distinct program runs once per prompt)."""
    from emergence_jax.evaluate.programs import program_from_completion
    from emergence_jax.evaluate.sandbox import run_test_cases

    seen: dict[tuple[str, str], bool] = {}

    def verify(prompt, completion: str) -> bool:
        program = program_from_completion(completion)
        key = (prompt.context, program)
        if key not in seen:
            if not prompt.test_cases:
                raise UserError("a code prompt has no test cases; PassUntil cannot verify it")
            results = run_test_cases(program, prompt.test_cases, time_limit_s=time_limit_s, memory_limit_mb=memory_limit_mb)
            seen[key] = bool(results) and all(r.passed for r in results)
        return seen[key]

    return verify


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from emergence_jax.evaluate.command import add_pretrain_loss_arguments
    from emergence_jax.evaluate.loading import add_device_arguments

    parser.add_argument("--model", required=True, help="checkpoint folder (Hugging Face config.json + safetensors + tokenizer)")
    parser.add_argument("--task", required=True, help="a generation or code task, e.g. gsm8k, apps")
    parser.add_argument("--out", required=True, help="PassUntil state/results file (.json); an existing one with the same settings is resumed")
    parser.add_argument("--r", type=int, default=1, help="passes to wait for per instance (Hu et al. use 1 or 2)")
    parser.add_argument("--max-samples", type=int, default=100_000, help="per-instance cap K_max; instances that reach it are censored")
    parser.add_argument("--round-budget", type=int, default=4096, help="samples per round, split over unresolved instances; state is saved after each round")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="tokens sampled per completion")
    parser.add_argument("--shots", type=int, default=None, help="in-context examples (default: the task's usual number)")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder holding the task's prepared dataset")
    parser.add_argument("--split", default=None, help="split to evaluate (default: the task's evaluation split)")
    parser.add_argument("--limit", type=int, default=None, help="use a seeded subset of N instances")
    parser.add_argument("--seed", type=int, default=0, help="seed for in-context examples and sampling")
    parser.add_argument("--params", type=float, default=None, help="parameter count N recorded for the scaling law (default: counted from config.json)")
    add_pretrain_loss_arguments(parser, required=False)
    parser.add_argument("--model-id", default=None, help="checkpoint id recorded in the results (default: the folder's name)")
    parser.add_argument("--confidence", type=float, default=0.9, help="interval level (default 0.9)")
    parser.add_argument("--time-limit", type=float, default=4.0, help="code tasks: seconds per test case")
    parser.add_argument("--memory-limit", type=int, default=512, help="code tasks: MiB per test case")
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import jax
    from tqdm.auto import tqdm

    from emergence_jax.data import tasks
    from emergence_jax.evaluate.command import pretrain_loss_from_arguments
    from emergence_jax.evaluate.loading import load_model_for_evaluation, mesh_from_arguments
    from emergence_jax.evaluate.pass_until import estimates_from_state, run_pass_until
    from emergence_jax.models import count_params

    mesh = mesh_from_arguments(args)  # --distributed: joins the multi-host job; process 0 verifies and writes --out
    if args.task not in tasks.TASKS:
        raise UserError(f"--task {args.task}: unknown task; choose one of {', '.join(sorted(tasks.TASKS))}")
    spec = tasks.TASKS[args.task]
    if spec.kind == "code":
        verify = program_verifier(time_limit_s=args.time_limit, memory_limit_mb=args.memory_limit)
    elif spec.kind == "generation":
        verify = exact_answer_verifier()
    else:
        raise UserError(f"--task {args.task}: PassUntil samples answers, so it needs a generation or code task, not {spec.kind}")
    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise UserError(f"--out {out}: PassUntil writes one JSON state file; use a .json suffix")
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must lie in (0, 1), got {args.confidence}")
    shots = spec.default_shots if args.shots is None else args.shots
    split_kwargs = {} if args.split is None else {"split": args.split}
    prompts = tasks.eval_prompts(args.task, data_dir=args.data_dir, shots=shots, seed=args.seed, limit=args.limit, **split_kwargs)
    if not prompts:
        raise UserError(f"--task {args.task}: no evaluation examples found; check --data-dir and --split")
    loaded = load_model_for_evaluation(
        args.model, compute_dtype=args.compute_dtype, param_dtype=args.param_dtype, mesh=mesh
    )
    metadata: dict[str, Any] = {
        "model": args.model_id or loaded.model_id,
        "task": args.task,
        "shots": shots,
        "params": float(args.params) if args.params is not None else float(count_params(loaded.config)),
        "max_new_tokens": args.max_new_tokens,
    }
    loss, corpus = pretrain_loss_from_arguments(args)
    if loss is not None:
        metadata["pretrain_loss"] = loss
    if corpus:
        metadata["loss_corpus"] = corpus
    sampler = ModelSampler(
        loaded.model, loaded.tokenizer, max_new_tokens=args.max_new_tokens, max_length=loaded.max_length, batch_size=args.batch_size, mesh=mesh
    )
    writer = jax.process_index() == 0
    bar = tqdm(total=len(prompts), desc="pass-until", unit="instance", disable=not writer)

    def progress(resolved: int, total: int, samples: int) -> None:
        bar.update(resolved - bar.n)
        bar.set_postfix(samples=samples)

    state = run_pass_until(
        prompts, sampler, verify, state_path=out, r=args.r, max_samples=args.max_samples, round_budget=args.round_budget,
        seed=args.seed, confidence=args.confidence, metadata=metadata, progress=progress,
    )
    bar.close()
    estimates = estimates_from_state(state)
    completed = sum(e.completed for e in estimates)
    if writer:
        print(
            f"{metadata['model']} {args.task}: {completed}/{len(estimates)} instances reached {args.r} pass(es), "
            f"{len(estimates) - completed} censored at {args.max_samples} samples; mean PassUntil {np.mean([e.estimate for e in estimates]):.3g} -> {out}"
        )
    return 0
