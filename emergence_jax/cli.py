"""The single `emergence-jax` entry point.

Each subcommand lives in its own module, which defines `add_arguments(parser)` and `run(args)`.
Only the chosen subcommand's module is imported, so `emergence-jax fit` never imports model code
and `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from emergence_jax.errors import UserError

# name -> (module path, one-line help). Add a line here to add a subcommand.
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("emergence_jax.laws.fit_command", "fit the emergence law to results records; writes fit.json, posterior.nc and plots"),
    "predict": ("emergence_jax.laws.predict_command", "probability that a model at a given pretraining loss has emerged"),
    "backtest": ("emergence_jax.laws.backtest_command", "hold out the strongest checkpoints, predict their emergence, report the error"),
    "threshold": ("emergence_jax.laws.threshold_command", "loss-threshold analysis (Du et al.) of accuracy and continuous metrics against pretraining loss"),
    "fit-pass-until": ("emergence_jax.laws.pass_until_law", "fit the PassUntil task scaling law log(-log PU) ~ log N per instance; predict, test curvature, plot"),
    "prepare-data": ("emergence_jax.data.prepare_command", "build task datasets (MMLU, GSM8K, CSQA, CoLA, APPS) as TFDS array_record files"),
    "evaluate": ("emergence_jax.evaluate.command", "few-shot accuracy of a checkpoint on a task (multiple choice, GSM8K, APPS); appends results rows"),
    "pretrain-loss": ("emergence_jax.evaluate.pretrain_loss_command", "a checkpoint's loss on a held-out corpus, in nats/token and bits/byte"),
    "finetune": ("emergence_jax.train.command", "finetune a checkpoint on D task examples (full or LoRA, sharded, resumable), then evaluate it"),
    "pass-until": ("emergence_jax.evaluate.pass_until_run", "PassUntil: sample each instance until r passes (or a cap), resumable; writes per-instance pass rates with exact intervals"),
    "sweep": ("emergence_jax.sweep.command", "run a grid of checkpoints x tasks x D x seeds (loss, few-shot, finetune, evaluate); skips done work, resumes, appends results"),
    "demo": ("emergence_jax.demo.command", "the whole method on one CPU: pretrain a tiny ladder, few-shot, finetune sweep, fit, check against held-out models; HTML report"),
    "bench": ("emergence_jax.bench", "throughput benchmarks, each beside a reference in the same run"),
    "import": ("emergence_jax.imports.command", "turn results people already hold (lm-eval: lm-evaluation-harness output) into results records"),
    "compare": ("emergence_jax.laws.compare_command", "P(family A emerges before family B) and the emergence-loss difference, from two fits"),
    "plan": ("emergence_jax.laws.plan_command", "choose the next finetuning runs by expected reduction of the emergence-loss interval per cost"),
    "study": ("emergence_jax.laws.study_command", "simulation studies with known truth (plan vs full grid vs random; compare calibration)"),
    "obsscale": ("emergence_jax.obsscale_command", "observational scaling baseline: sigmoid of benchmark PCs or log-FLOPs across families, backtested with a FLOPs cutoff"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; subcommand arguments are added for `command` only (all of them when None)."""
    parser = argparse.ArgumentParser(
        prog="emergence-jax",
        description="Predict when an LLM capability will emerge, by finetuning pre-emergence checkpoints.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_path, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_path)
        if command is None or command == name:
            _module(module_path).add_arguments(sub)
    return parser


def _module(module_path: str):
    return importlib.import_module(module_path)


def _use_compilation_cache() -> None:
    """Keep XLA compilations on disk between runs (JAX's persistent cache), so a second `fit`,
    `backtest` or study does not recompile its samplers (the NUTS program alone takes 10-60 s to
    compile on 2 CPU cores). `JAX_COMPILATION_CACHE_DIR` chooses the folder (empty: no cache); by
    default `$XDG_CACHE_HOME/emergence_jax/xla` (~/.cache/...). Set through the environment, so
    JAX is not imported here and commands that never use it stay fast."""
    import os

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(root, "emergence_jax", "xla"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "2")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else "")
    args = parser.parse_args(argv)
    try:
        _use_compilation_cache()
        result = _module(args._module).run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
