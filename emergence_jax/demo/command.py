"""`emergence-jax demo [--quick] --out DIR`: the whole method on one CPU, every stage cached.

Stages (each skipped when its outputs exist, so a killed demo continues where it stopped):
1. pretrain the ladder (train state checkpoints + parameter snapshots under DIR/checkpoints);
2. held-out loss and few-shot accuracy of every snapshot -> DIR/fewshot.jsonl;
3. finetune each rung's `finetune_steps` checkpoints that are pre-emergence on every D, several subsets,
   -> DIR/finetune.jsonl (appended one checkpoint at a time);
4. DIR/sweep.csv (all rows), the fit on pre-emergence rows only, the comparison with the held-out
   truth -> DIR/summary.json, DIR/report.html and its PNG plots.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

from emergence_jax.errors import UserError

TASK = "kv_recall"
LOSS_CORPUS = "demo_heldout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="run directory (created; an interrupted run in it is resumed)")
    parser.add_argument("--quick", action="store_true", help="the small configuration (about 3 minutes on 2 CPU cores)")


def run(args: argparse.Namespace) -> int:
    from emergence_jax.demo.settings import SETTINGS

    summary = run_demo(SETTINGS["quick" if args.quick else "default"], args.out)
    predicted = summary["predicted_fewshot_emergence_loss"]
    print(
        f"predicted few-shot emergence {predicted['median']:.3f} [{predicted['q05']:.3f}, {predicted['q95']:.3f}] nats, "
        f"truth {summary['true_fewshot_emergence_loss']:.3f}, error {summary['error_nats']:.3f} nats; report: {args.out / 'report.html'}"
    )
    return 0


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
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(fingerprint, indent=1))
    tmp.replace(path)


def _fewshot_stage(settings, out: Path) -> list[dict]:
    from emergence_jax.checkpoints.orbax import restore_params
    from emergence_jax.demo.corpus import corpus_sequences, episodes, heldout_stream
    from emergence_jax.demo.pretrain import checkpoint_name, pretrain_rung, training_flops
    from emergence_jax.demo.scoring import fewshot_accuracy, heldout_loss
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
        snapshots = pretrain_rung(rung, settings.world, settings.pretrain, out, log=_log)
        _log(f"{rung.name}: pretrained in {time.perf_counter() - started:.0f} s")
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
        write_records(path, rows)
        _log(f"{rung.name}: {len(snapshots)} checkpoints scored")
    return rows


def _finetune_stage(settings, out: Path, fewshot_rows: list[dict]) -> tuple[list[dict], list[str]]:
    from emergence_jax.checkpoints.orbax import restore_params
    from emergence_jax.demo.analysis import pre_emergence_models
    from emergence_jax.demo.corpus import episodes
    from emergence_jax.demo.finetune import finetune_sweep
    from emergence_jax.demo.pretrain import checkpoint_name
    from emergence_jax.records import append_records, read_records

    chosen = []
    for rung in settings.rungs:
        mine = [r for r in fewshot_rows if r["rung"] == rung.name]
        candidates = {checkpoint_name(rung, step) for step in rung.finetune_steps}
        chosen += [name for name in pre_emergence_models(mine) if name in candidates]
    if not chosen:
        raise UserError("no checkpoint of the ladder is at chance few-shot; the demo's ladder starts too late")
    path = out / "finetune.jsonl"
    rows = read_records(path) if path.exists() else []
    done = {r["model"] for r in rows}
    by_name = {r["model"]: r for r in fewshot_rows}
    pools = [episodes(settings.world, max(settings.amounts), purpose="finetune", seed=s) for s in range(settings.subsets)]
    eval_episodes = episodes(settings.world, settings.eval_episodes, purpose="eval", seed=0)
    runs = [(D, s) for D in settings.amounts for s in range(settings.subsets)]
    for name in chosen:
        if name in done:
            continue
        started = time.perf_counter()
        base = by_name[name]
        model = restore_params(out / "checkpoints" / name)
        new_rows = [
            {
                **{k: base[k] for k in ("model", "rung", "step", "pretrain_loss", "shots", "n_eval", "chance", "task", "metric", "loss_corpus", "params", "flops", "tokens")},
                "train_examples": result["train_examples"], "seed": result["subset"],
                "accuracy": result["accuracy"], "correct_prob": result["correct_prob"],
            }
            for result in finetune_sweep(model, pools, runs, eval_episodes, settings.finetune)
        ]
        append_records(path, new_rows)
        rows += new_rows
        accuracies = ", ".join(f"D={r['train_examples']}/{r['seed']}: {r['accuracy']:.3f}" for r in new_rows)
        _log(f"{name} (loss {base['pretrain_loss']:.3f}, few-shot {base['accuracy']:.3f}) finetuned in {time.perf_counter() - started:.0f} s: {accuracies}")
    return [r for r in rows if r["model"] in chosen], chosen


def run_demo(settings, out: Path) -> dict:
    """Run (or resume) the demo into `out`; returns the summary written to out/summary.json."""
    import numpy as np

    from emergence_jax.demo.analysis import analyse
    from emergence_jax.demo.report import write_report
    from emergence_jax.laws.sweep import sweep_from_records
    from emergence_jax.records import read_records, write_records

    started = time.perf_counter()
    out = Path(out)
    _check_settings(out, settings.fingerprint())
    fewshot_rows = _fewshot_stage(settings, out)
    finetune_rows, fit_models = _finetune_stage(settings, out, fewshot_rows)
    results_path = out / "sweep.csv"
    write_records(results_path, fewshot_rows + finetune_rows)
    fit_inputs = hashlib.sha256(results_path.read_bytes() + repr((settings.sampler, settings.form, settings.likelihood)).encode()).hexdigest()
    previous = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    if previous.get("fit_inputs_sha256") == fit_inputs and (out / "report.html").exists():
        _log("fit and report are up to date")
        return previous
    sweep = sweep_from_records(read_records(results_path), task=TASK, metric="accuracy", source=str(results_path))
    _log(f"fitting the law to {len(fit_models)} pre-emergence checkpoints ({int(np.isin(sweep.models, fit_models).sum())} rows)")
    fit_started = time.perf_counter()
    result, fit = analyse(sweep, fit_models, settings.sampler, form=settings.form, likelihood=settings.likelihood)
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
        "wall_seconds": previous.get("wall_seconds", 0.0) + (time.perf_counter() - started),
    }
    write_report(out, summary, fewshot_rows, sweep, sweep.subset(np.isin(sweep.models, fit_models)), fit)
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    tmp.replace(out / "summary.json")
    return summary
