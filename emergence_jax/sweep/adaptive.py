"""`emergence-jax sweep --adaptive`: finetuning runs chosen by `plan` between rounds, not the whole grid.

Round 0 runs every pretraining-loss and few-shot job of the config plus its smallest D (every
seed) on every checkpoint: the few-shot rows plus one small finetuning round. Each later round
fits the emergence law to the results so far, asks `laws.plan.plan_runs` for the next
`--runs-per-round` (checkpoint, D) runs among the grid's runs not yet done, within the cost still
left, and runs them (every seed of the task). A run's cost is D × seeds (finetuning examples); the
budget is `--adaptive-budget` × the full grid's finetuning cost. The loop ends when the budget is
spent, no affordable run is left, or `--rounds` rounds are done.

Every round is an ordinary sweep of a sub-grid of the config (the same job ids and settings), so
done markers, resumption after an interruption and the results file are the sweep's own; an
adaptive sweep run again counts what is already done and plans from there. Each round's plan is
written to `output_dir/adaptive/round<k>.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from emergence_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class AdaptiveSettings:
    """How `sweep --adaptive` chooses runs (see the module docstring)."""

    runs_per_round: int = 4
    budget_fraction: float = 0.5
    rounds: int = 10
    form: str = "auto"
    chains: int = 4
    warmup: int = 500
    samples: int = 500
    seed: int = 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = AdaptiveSettings()
    parser.add_argument("--adaptive", action="store_true", help="run the few-shot jobs and the smallest D first, then let `plan` choose the finetuning runs between rounds (one task with train_examples)")
    parser.add_argument("--runs-per-round", type=int, default=d.runs_per_round, help=f"--adaptive: (checkpoint, D) runs per round (default {d.runs_per_round})")
    parser.add_argument("--adaptive-budget", type=float, default=d.budget_fraction, help=f"--adaptive: share of the full grid's finetuning cost (D x seeds) to spend, first round included (default {d.budget_fraction})")
    parser.add_argument("--rounds", type=int, default=d.rounds, help=f"--adaptive: planned rounds at most (default {d.rounds})")
    parser.add_argument("--plan-form", default=d.form, help=f"--adaptive: performance form of the law fitted between rounds (default {d.form}; as `fit --form`)")


def settings_from_args(args: argparse.Namespace) -> AdaptiveSettings:
    if args.runs_per_round < 1 or args.rounds < 1:
        raise UserError("--runs-per-round and --rounds must be at least 1")
    if not 0 < args.adaptive_budget <= 1:
        raise UserError(f"--adaptive-budget must be in (0, 1], a share of the full grid's cost; got {args.adaptive_budget}")
    return AdaptiveSettings(runs_per_round=args.runs_per_round, budget_fraction=args.adaptive_budget, rounds=args.rounds, form=args.plan_form)


def adaptive_task(config, source: str):
    """The one task with finetuning amounts that an adaptive sweep plans for."""
    if config.distributed:
        raise UserError(f"{source}: --adaptive runs on one process; set distributed: false (or run the full grid)")
    if "finetune" not in config.stages:
        raise UserError(f"{source}: --adaptive chooses finetuning runs but the finetune stage is off")
    tasks = [task for task in config.tasks if task.train_examples]
    if len(tasks) != 1 or len(config.tasks) != 1:
        raise UserError(f"{source}: --adaptive plans for one task with train_examples; the config has {len(config.tasks)} task(s), {len(tasks)} with train_examples")
    return tasks[0]


def _sub_config(config, task, models, train_examples):
    return dataclasses.replace(config, models=tuple(models), tasks=(dataclasses.replace(task, train_examples=tuple(sorted(train_examples))),))


def _results(config) -> list[dict]:
    """The sweep's results rows so far (a remote records file is copied to a local file first)."""
    from emergence_jax.records import read_records
    from emergence_jax.sweep.runner import work_dir
    from emergence_jax.sweep.storage import SweepOutput

    output = SweepOutput(config.output_dir, config.records, scratch=work_dir(config) / "staging")
    if not output.records.exists():
        return []
    if not output.remote:
        return read_records(output.records)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / output.records.name
        local.write_bytes(output.records.read_bytes())
        return read_records(local)


def candidate_runs(config, task, rows: list[dict]):
    """(candidates not yet started, cost spent so far, full grid cost, started runs missing some
    seeds): one candidate per (checkpoint, D) of the grid, cost D × seeds, its pretraining loss from
    the config or the few-shot rows. A started run counts as spent."""
    from emergence_jax.laws.plan import Candidate

    rows = [row for row in rows if row.get("task", task.name) == task.name]
    seeds = len(task.seeds)
    seeds_done: dict[tuple[str, int], set] = {}
    for row in rows:
        if row["train_examples"] > 0:
            seeds_done.setdefault((row["model"], int(row["train_examples"])), set()).add(int(row.get("seed", 0)))
    done = set(seeds_done)
    partial = sorted(key for key, found in seeds_done.items() if not set(task.seeds) <= found)
    losses = {row["model"]: float(row["pretrain_loss"]) for row in rows}
    finetuned = [row for row in rows if row["train_examples"] > 0] or rows
    n_eval = int(np.median([row["n_eval"] for row in finetuned]))
    chance = float(np.median([row["chance"] for row in rows]))
    shots = int(task.finetuned_shots[0]) if task.finetuned_shots else 0
    full = float(len(config.models) * sum(task.train_examples) * seeds)
    spent = float(sum(D * seeds for model, D in done if D in task.train_examples and model in {m.name for m in config.models}))
    candidates = []
    for model in config.models:
        loss = model.pretrain_loss if model.pretrain_loss is not None else losses.get(model.name)
        if loss is None:
            raise UserError(f"{model.name}: no pretraining loss in the results after the first round; run the pretrain_loss stage")
        for D in task.train_examples:
            if (model.name, D) not in done:
                candidates.append(Candidate(model=model.name, pretrain_loss=float(loss), train_examples=int(D), cost=float(D * seeds), n_eval=n_eval, chance=chance, shots=shots))
    return candidates, spent, full, partial


def fit_law(rows: list[dict], task_name: str, settings: AdaptiveSettings):
    """The NUTS fit `plan` reweights, on the task's rows."""
    from emergence_jax.laws.fit import SamplerSettings, fit_emergence_law
    from emergence_jax.laws.sweep import sweep_from_records

    sampler = SamplerSettings(chains=settings.chains, warmup=settings.warmup, samples=settings.samples, seed=settings.seed, progress=False)
    sweep = sweep_from_records([row for row in rows if row.get("task", task_name) == task_name], task=None, source="adaptive sweep results")
    return fit_emergence_law(sweep, form=settings.form, sampler=sampler, checks=False)


def run_adaptive(config, *, source: str, settings: AdaptiveSettings, progress: bool = True, keep_going: bool = False, run_round=None, fit=None) -> int:
    """Round 0, then planned rounds (module docstring). `run_round(config, source)` runs a sub-grid
    (default: `run_sweep`); `fit(rows)` fits the law (default: `fit_law`). Returns the exit code."""
    from emergence_jax.laws.plan import plan_runs
    from emergence_jax.sweep.runner import run_sweep
    from emergence_jax.sweep.storage import SweepOutput

    task = adaptive_task(config, source)
    run_round = run_round or (lambda sub, where: run_sweep(sub, source=where, progress=progress, keep_going=keep_going))
    fit = fit or (lambda rows: fit_law(rows, task.name, settings))
    smallest = min(task.train_examples)
    print(f"adaptive round 0: few-shot jobs and D={smallest} on {len(config.models)} checkpoint(s)", flush=True)
    code = run_round(_sub_config(config, task, config.models, (smallest,)), f"{source} (adaptive round 0)")
    if code:
        return code
    output = SweepOutput(config.output_dir, config.records, scratch=Path(tempfile.gettempdir()))
    def run_runs(runs: dict[str, list[int]], label: str) -> int:
        for model in config.models:
            if model.name in runs:
                code = run_round(_sub_config(config, task, (model,), runs[model.name]), f"{source} ({label})")
                if code:
                    return code
        return 0

    *_, partial = candidate_runs(config, task, _results(config))
    if partial:  # runs an interrupted round left with some seeds missing
        missing: dict[str, list[int]] = {}
        for model, D in partial:
            missing.setdefault(model, []).append(D)
        code = run_runs(missing, "adaptive: completing interrupted runs")
        if code:
            return code
    for round_index in range(1, settings.rounds + 1):
        rows = _results(config)
        candidates, spent, full, _ = candidate_runs(config, task, rows)
        left = settings.budget_fraction * full - spent
        affordable = [c for c in candidates if c.cost <= left * (1 + 1e-9)]
        if not affordable:
            print(f"adaptive: stopping after round {round_index - 1}: spent {spent:g} of {settings.budget_fraction * full:g} (cost = D x seeds), {len(candidates)} run(s) not done, none affordable")
            break
        law = fit(rows)
        plan = plan_runs(law, affordable, budget=settings.runs_per_round, cost_budget=left, max_draws=1000, seed=settings.seed + round_index)
        plan.update(round=round_index, spent_before=spent, budget=settings.budget_fraction * full, full_grid_cost=full)
        (output.root / "adaptive").mkdir(parents=True, exist_ok=True)
        output.write_json(output.root / "adaptive" / f"round{round_index}.json", plan)
        chosen: dict[str, list[int]] = {}
        for run in plan["runs"]:
            chosen.setdefault(run["model"], []).append(run["train_examples"])
        print(f"adaptive round {round_index}: width {plan['current_width']:.4f} -> expected {plan['expected_width_after']:.4f}; running " + ", ".join(f"{m} D={D}" for m, Ds in chosen.items() for D in Ds), flush=True)
        code = run_runs(chosen, f"adaptive round {round_index}")
        if code:
            return code
    _, spent, full, _ = candidate_runs(config, task, _results(config))
    print(f"adaptive sweep: finetuning cost {spent:g} of the full grid's {full:g} ({100 * spent / full:.0f}%)", file=sys.stderr)
    return 0
