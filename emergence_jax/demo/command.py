"""`emergence-jax demo [--quick] [--seeds N] --out DIR`: the whole method on one CPU, every stage cached.

Stages (each skipped when its outputs exist, so a killed demo continues where it stopped):
1. pretrain the ladder with `train.loop` (train-state checkpoints + parameter snapshots under DIR/checkpoints);
2. held-out loss and few-shot accuracy of every snapshot -> DIR/fewshot.jsonl;
3. finetune, by rule, the checkpoints within the fit horizon (the first `fit_fraction` of each
   rung's training) still at chance few-shot, on the `finetune_every` grid: from the strongest of
   them back to the earliest where the largest D still lifts accuracy above chance (at least
   `min_fit_checkpoints`, at most `max_finetuned`), every D and subset at once (`train.multi_run`)
   -> DIR/finetune.jsonl, one checkpoint at a time;
4. DIR/sweep.csv (all rows); the law fitted to the finetuned checkpoints only; the model-free truth
   from every checkpoint's few-shot rows -> DIR/summary.json, DIR/report.html and its PNG plots.

With `--seeds N` the default world is rerun with seeds 0..N-1 (world and initialisation) into
DIR/seed-K, and DIR/replication.json tabulates error, coverage and FLOPs ahead per seed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import time
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.io import write_json

TASK = "kv_recall"
LOSS_CORPUS = "demo_heldout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="run directory (created; an interrupted run in it is resumed)")
    parser.add_argument("--quick", action="store_true", help="the small configuration (about 3 minutes on 2 CPU cores)")
    parser.add_argument("--seeds", type=int, default=None, metavar="N", help="replicate the run with seeds 0..N-1 (world and initialisation) into OUT/seed-K; writes OUT/replication.json")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.demo.settings import SETTINGS, with_seed

    settings = SETTINGS["quick" if args.quick else "default"]
    if args.seeds is None:
        _print_summary(run_demo(settings, args.out), args.out)
        return 0
    if not 1 <= args.seeds <= 20:
        raise UserError(f"--seeds: must be between 1 and 20, got {args.seeds}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"{args.out}: --out must be a folder (a new one, or a demo run to resume), not a file")
    if args.out.is_dir() and any(p.name != "replication.json" and not p.name.startswith("seed-") for p in args.out.iterdir()):
        raise UserError(f"{args.out}: is a non-empty folder that holds no demo replication; choose a new --out")
    table = []
    for seed in range(args.seeds):
        summary = run_demo(with_seed(settings, seed), args.out / f"seed-{seed}")
        _print_summary(summary, args.out / f"seed-{seed}")
        table.append(replication_row(seed, summary))
    write_json(args.out / "replication.json", {"settings": settings.name, "seeds": table, "meeting_all_three": sum(r["meets_all"] for r in table)}, indent=1)
    for row in table:
        print(f"seed {row['seed']}: error {_fmt(row['error_nats'])} nats, truth inside 90% interval {row['within_interval']}, flops_ahead {_fmt(row['flops_ahead'], 2)}, all three met {row['meets_all']}")
    print(f"{sum(r['meets_all'] for r in table)} of {len(table)} seeds meet all three (error <= {ERROR_BAR_NATS} nats, truth inside the interval, flops_ahead >= {FLOPS_AHEAD_BAR})")
    return 0


# The demo's own bar for a foresighted prediction (issue 13): against the model-free truth.
ERROR_BAR_NATS = 0.05
FLOPS_AHEAD_BAR = 2.0


def replication_row(seed: int, summary: dict) -> dict:
    error, ahead = summary["error_nats"], summary["flops_ahead"]
    meets = error is not None and error <= ERROR_BAR_NATS and summary["within_interval"] and ahead is not None and ahead >= FLOPS_AHEAD_BAR
    return {
        "seed": seed, "predicted": summary["predicted_fewshot_emergence_loss"], "truth": summary["true_fewshot_emergence_loss"],
        "truth_bracket": [summary["model_free_truth"]["low"], summary["model_free_truth"]["high"]],
        "error_nats": error, "within_interval": summary["within_interval"], "flops_ahead": ahead, "meets_all": bool(meets),
    }


def _fmt(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_summary(summary: dict, out: Path) -> None:
    predicted = summary["predicted_fewshot_emergence_loss"]
    print(
        f"predicted few-shot emergence {_fmt(predicted['median'])} [{_fmt(predicted['q05'])}, {_fmt(predicted['q95'])}] nats, "
        f"model-free truth {_fmt(summary['true_fewshot_emergence_loss'])}, error {_fmt(summary['error_nats'])} nats, "
        f"flops_ahead {_fmt(summary['flops_ahead'], 2)}; report: {out / 'report.html'}"
    )


def _log(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def _check_settings(out: Path, fingerprint: dict) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{out}: --out must be a folder (a new one, or a demo run to resume), not a file")
    path = out / "settings.json"
    if path.exists():
        if json.loads(path.read_text()) != fingerprint:
            raise UserError(f"{out}: holds a demo run made with other settings; choose a new --out")
        return
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"{out}: is a non-empty folder that holds no demo run; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, fingerprint, indent=1)


class StageClock:
    """Wall and CPU seconds per stage (pretrain, score, finetune, fit, report), summed over every
    invocation of one run directory (a resumed run adds to what the killed one spent), kept in
    DIR/stage_seconds.json. CPU seconds (every thread of this process) are the steadier figure on
    a loaded machine."""

    def __init__(self, out: Path):
        from emergence_jax.io import read_json

        self.path = out / "stage_seconds.json"
        saved = read_json(self.path, what="demo stage times") if self.path.exists() else {}
        self.wall: dict[str, float] = dict(saved.get("wall", {}))
        self.cpu: dict[str, float] = dict(saved.get("cpu", {}))
        self._before, self._started = float(saved.get("total_wall", 0.0)), time.perf_counter()

    def total(self) -> float:
        """Wall seconds of every invocation so far (a killed one up to its last finished stage)."""
        return self._before + time.perf_counter() - self._started

    @contextlib.contextmanager
    def stage(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu
        write_json(self.path, {"wall": self.wall, "cpu": self.cpu, "total_wall": self.total()}, indent=1)


def _fewshot_stage(settings, out: Path, clock: StageClock) -> list[dict]:
    from emergence_jax.demo.corpus import corpus_sequences, episodes, heldout_stream
    from emergence_jax.demo.pretrain import checkpoint_name, pretrain_rung
    from emergence_jax.records import read_records, write_records

    path = out / "fewshot.jsonl"
    rows = read_records(path) if path.exists() else []
    done = {r["model"] for r in rows}
    heldout = corpus_sequences(settings.world, settings.heldout_sequences, heldout_stream())
    eval_episodes = episodes(settings.world, settings.eval_episodes, purpose="eval", seed=0)
    for rung in settings.rungs:
        if all(checkpoint_name(rung, s) in done for s in rung.checkpoint_steps):
            continue
        started = time.perf_counter()
        with clock.stage("pretrain"):
            snapshots = pretrain_rung(rung, settings.world, settings.pretrain, out, log=_log)
        _log(f"{rung.name}: pretrained in {time.perf_counter() - started:.0f} s")
        started = time.perf_counter()
        with clock.stage("score"):
            rows += _score(settings, rung, snapshots, done, heldout, eval_episodes)
            write_records(path, rows)
        _log(f"{rung.name}: {len(snapshots)} checkpoints scored in {time.perf_counter() - started:.0f} s")
    return rows


def _score(settings, rung, snapshots, done, heldout, eval_episodes) -> list[dict]:
    """Few-shot rows of `snapshots` not yet in `done`."""
    from emergence_jax.checkpoints.orbax import restore_params
    from emergence_jax.demo.pretrain import checkpoint_name, training_flops
    from emergence_jax.demo.scoring import fewshot_accuracy, heldout_loss

    rows = []
    for step, folder in snapshots.items():
        name = checkpoint_name(rung, step)
        if name in done:
            continue
        model = restore_params(folder)
        accuracy, probability = fewshot_accuracy(model, eval_episodes)
        rows.append({
            "model": name, "rung": rung.name, "step": step, "pretrain_loss": heldout_loss(model, heldout),
            "train_examples": 0, "shots": settings.world.shots, "accuracy": accuracy,
            "n_eval": len(eval_episodes) * settings.world.queries, "chance": settings.world.chance,
            "correct_prob": probability, "task": TASK, "metric": "accuracy", "loss_corpus": LOSS_CORPUS,
            "params": float(rung.params()), "flops": training_flops(rung, step, settings.world, settings.pretrain),
            "tokens": float(step * settings.pretrain.batch_size * settings.world.sequence_length),
        })
    return rows


def _finetune_stage(settings, out: Path, fewshot_rows: list[dict], clock: StageClock) -> tuple[list[dict], list[str], list[str]]:
    """Finetune by rule; returns (finetuned rows, finetuned checkpoints, fit checkpoints)."""
    from emergence_jax.checkpoints.orbax import restore_params
    from emergence_jax.demo.analysis import largest_amount_helps, pre_emergence_models
    from emergence_jax.demo.corpus import episodes
    from emergence_jax.demo.finetune import finetune_pools, finetune_sweep
    from emergence_jax.records import append_records, read_records

    path = out / "finetune.jsonl"
    rows = read_records(path) if path.exists() else []
    by_name = {r["model"]: r for r in fewshot_rows}
    pools = finetune_pools(settings.world, settings.finetune, max(settings.amounts), settings.subsets)
    eval_episodes = episodes(settings.world, settings.eval_episodes, purpose="eval", seed=0)
    runs = [(D, s) for D in settings.amounts for s in range(settings.subsets)]
    finetuned, fit = [], []
    for rung in settings.rungs:
        horizon = settings.fit_fraction * rung.steps
        candidates = [
            m for m in pre_emergence_models([r for r in fewshot_rows if r["rung"] == rung.name])
            if by_name[m]["step"] % settings.finetune_every == 0 and by_name[m]["step"] <= horizon
        ]
        mine = []
        for name in candidates[: settings.max_finetuned]:
            new_rows = [r for r in rows if r["model"] == name]
            if not new_rows:
                with clock.stage("finetune"):
                    new_rows = _finetune_one(settings, out, by_name[name], pools, runs, eval_episodes, restore_params, finetune_sweep)
                    append_records(path, new_rows)
                rows += new_rows
            mine.append(name)
            if not largest_amount_helps(new_rows) and len(mine) >= settings.min_fit_checkpoints:
                break
        finetuned += mine
        fit += mine
    if len(fit) < settings.min_fit_checkpoints:
        raise UserError(
            f"only {len(fit)} finetuned checkpoint(s) lie within the fit horizon (the first {settings.fit_fraction:g} of training); "
            "the ladder emerges too early for its horizon (lower fit_fraction or train longer)"
        )
    return [r for r in rows if r["model"] in finetuned], finetuned, fit


def _finetune_one(settings, out: Path, base: dict, pools, runs, eval_episodes, restore_params, finetune_sweep) -> list[dict]:
    started = time.perf_counter()
    model = restore_params(out / "checkpoints" / base["model"])
    new_rows = [
        {
            **{k: base[k] for k in ("model", "rung", "step", "pretrain_loss", "shots", "n_eval", "chance", "task", "metric", "loss_corpus", "params", "flops", "tokens")},
            "train_examples": result["train_examples"], "seed": result["subset"],
            "accuracy": result["accuracy"], "correct_prob": result["correct_prob"],
        }
        for result in finetune_sweep(model, pools, runs, eval_episodes, settings.finetune)
    ]
    accuracies = ", ".join(f"D={r['train_examples']}/{r['seed']}: {r['accuracy']:.3f}" for r in new_rows)
    _log(f"{base['model']} (loss {base['pretrain_loss']:.3f}, few-shot {base['accuracy']:.3f}) finetuned in {time.perf_counter() - started:.0f} s: {accuracies}")
    return new_rows


def run_demo(settings, out: Path) -> dict:
    """Run (or resume) the demo into `out`; returns the summary written to out/summary.json."""
    import numpy as np

    from emergence_jax.demo.analysis import analyse
    from emergence_jax.demo.report import write_report
    from emergence_jax.laws.sweep import sweep_from_records
    from emergence_jax.records import read_records, write_records

    out = Path(out)
    _check_settings(out, settings.fingerprint())
    clock = StageClock(out)
    fewshot_rows = _fewshot_stage(settings, out, clock)
    finetune_rows, finetuned_models, fit_models = _finetune_stage(settings, out, fewshot_rows, clock)
    results_path = out / "sweep.csv"
    write_records(results_path, fewshot_rows + finetune_rows)
    fit_inputs = hashlib.sha256(results_path.read_bytes() + repr((settings.sampler, settings.form, settings.likelihood, fit_models)).encode()).hexdigest()
    previous = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    if previous.get("fit_inputs_sha256") == fit_inputs and (out / "report.html").exists():
        _log("fit and report are up to date")
        return previous
    sweep = sweep_from_records(read_records(results_path), task=TASK, metric="accuracy", source=str(results_path))
    _log(f"fitting the law to {len(fit_models)} pre-emergence checkpoints ({int(np.isin(sweep.models, fit_models).sum())} rows)")
    fit_started = time.perf_counter()
    with clock.stage("fit"):
        result, fit = analyse(sweep, fit_models, finetuned_models, settings.sampler, form=settings.form, likelihood=settings.likelihood)
    _log(f"fitted in {time.perf_counter() - fit_started:.0f} s (max R-hat {result['law']['diagnostics']['r_hat_max']:.3f})")
    summary = {
        **result,
        "results_path": str(results_path.resolve()),
        "task": TASK,
        "shots": settings.world.shots,
        "chance": settings.world.chance,
        "likelihood": settings.likelihood,
        "settings": settings.name,
        "fit_inputs_sha256": fit_inputs,
        "wall_seconds": clock.total(),
    }
    with clock.stage("report"):
        write_report(out, summary, fewshot_rows, sweep, sweep.subset(np.isin(sweep.models, finetuned_models)), sweep.subset(np.isin(sweep.models, fit_models)), fit)
    summary["stage_seconds"] = dict(clock.wall)
    summary["stage_cpu_seconds"] = dict(clock.cpu)
    summary["wall_seconds"] = clock.total()
    write_json(out / "summary.json", summary, indent=1)
    return summary
