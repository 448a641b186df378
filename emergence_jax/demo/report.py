"""The demo's report: PNG plots of the ladder, the few-shot and finetuned curves, the fitted law and
the prediction against the held-out truth, and an HTML page that shows them with the numbers."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from emergence_jax.io import atomic_write_text
from emergence_jax.laws.fit import EmergenceFit
from emergence_jax.laws.functions import emergence_loss
from emergence_jax.laws.plots import _pyplot, plot_cdf, plot_fit
from emergence_jax.laws.sweep import Sweep

FIGURES = {
    "ladder_loss.png": "Held-out pretraining loss of every rung against training step",
    "fewshot_vs_loss.png": "Few-shot accuracy of every checkpoint against pretraining loss (grey band: chance ± 2 binomial SE)",
    "finetuned_vs_loss.png": "Accuracy after finetuning on D episodes against pretraining loss, every finetuned checkpoint: lines are subset means, one line style per rung",
    "fit.png": "The emergence law fitted to pre-emergence checkpoints only, extrapolated to few-shot (D0)",
    "prediction.png": "Emergence loss E(D) against D: fitted law with its 90% band, the measured onset per D, and the model-free truth (bracket of the first few-shot checkpoint above chance)",
    "emergence_cdf.png": "Posterior CDF of the predicted few-shot emergence loss",
}


def _save(fig, ax, xlabel: str, ylabel: str, path: Path) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_ladder(rows: list[dict], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for rung in sorted({r["rung"] for r in rows}):
        mine = sorted((r for r in rows if r["rung"] == rung), key=lambda r: r["step"])
        ax.plot([r["step"] for r in mine], [r["pretrain_loss"] for r in mine], marker="o", ms=3, label=f"{rung} ({int(mine[0]['params']):,} params)")
    _save(fig, ax, "pretraining step", "held-out loss (nats/token)", path)
    plt.close(fig)


def plot_fewshot(rows: list[dict], fit_models: list[str], truth: float | None, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    chance, n = rows[0]["chance"], rows[0]["n_eval"]
    se = np.sqrt(chance * (1 - chance) / n)
    losses = np.array([r["pretrain_loss"] for r in rows])
    ax.axhspan(chance - 2 * se, chance + 2 * se, color="grey", alpha=0.25)
    for rung in sorted({r["rung"] for r in rows}):
        mine = [r for r in rows if r["rung"] == rung]
        fitted = [r for r in mine if r["model"] in fit_models]
        held = [r for r in mine if r["model"] not in fit_models]
        line = ax.plot([r["pretrain_loss"] for r in mine], [r["accuracy"] for r in mine], lw=0.8, alpha=0.6)[0]
        ax.scatter([r["pretrain_loss"] for r in fitted], [r["accuracy"] for r in fitted], color=line.get_color(), marker="o", s=18, label=f"{rung}: fitted (finetuned)")
        ax.scatter([r["pretrain_loss"] for r in held], [r["accuracy"] for r in held], color=line.get_color(), marker="x", s=18, label=f"{rung}: not fitted")
    if truth is not None:
        ax.axvline(truth, color="black", ls="--", lw=1, label=f"model-free truth {truth:.3f}")
    ax.set_xlim(losses.max() + 0.01, losses.min() - 0.01)
    _save(fig, ax, "pretraining loss (nats/token)", "few-shot accuracy", path)
    plt.close(fig)


def plot_finetuned(sweep: Sweep, path: Path) -> None:
    """Accuracy against loss per D (colour), one line per rung (line style), subsets as dots."""
    plt = _pyplot()
    amounts = np.unique(sweep.train_examples)
    colours = plt.cm.viridis(np.linspace(0.1, 0.9, max(amounts.size - 1, 1)))
    rungs = np.array([model.split("@")[0] for model in sweep.models])
    styles = dict(zip(sorted(set(rungs)), ["-", "--", ":", "-."] * 4))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for index, D in enumerate(amounts):
        colour = "black" if D == 0 else colours[index - 1]
        for rung, style in styles.items():
            rows = sweep.subset((sweep.train_examples == D) & (rungs == rung))
            losses = np.unique(rows.loss)
            mean = [rows.accuracy[rows.loss == L].mean() for L in losses]
            label = ("few-shot" if D == 0 else f"D = {int(D)}") + f", {rung}"
            ax.plot(losses, mean, marker="o", ms=3, color=colour, ls=style, label=label)
            ax.scatter(rows.loss, rows.accuracy, s=6, color=colour, alpha=0.5)
    ax.axhline(float(sweep.chance[0]), color="grey", ls=":")
    ax.set_xlim(sweep.loss.max() + 0.005, sweep.loss.min() - 0.005)
    _save(fig, ax, "pretraining loss (nats/token)", "accuracy", path)
    plt.close(fig)


def plot_prediction(fit: EmergenceFit, result: dict, path: Path) -> None:
    plt = _pyplot()
    spec, draws = fit.spec, fit.posterior.draws()
    grid = np.geomspace(spec.D0, spec.D_ref * 1.5, 80)
    keep = np.linspace(0, draws["E0"].size - 1, min(draws["E0"].size, 1000)).astype(int)
    curves = emergence_loss(grid[None, :], draws["E0"][keep, None], draws["shift"][keep, None], draws["alpha"][keep, None], spec)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.fill_between(grid, np.percentile(curves, 5, axis=0), np.percentile(curves, 95, axis=0), color="crimson", alpha=0.2, label="fitted E(D), 90% band")
    ax.plot(grid, np.median(curves, axis=0), color="crimson")
    onsets = {int(k): v for k, v in result["onset_loss_per_D"].items() if int(k) > 0}
    ax.scatter(list(onsets), list(onsets.values()), color="navy", zorder=3, label="measured onset: weakest checkpoint above chance")
    if "0" in result["onset_loss_per_D"]:
        ax.axhline(result["onset_loss_per_D"]["0"], color="navy", ls=":", lw=1, label="few-shot onset (all checkpoints)")
    predicted = result["predicted_fewshot_emergence_loss"]
    if predicted["median"] is not None:
        ax.errorbar([spec.D0], [predicted["median"]], yerr=[[predicted["median"] - predicted["q05"]], [predicted["q95"] - predicted["median"]]], color="crimson", capsize=4, fmt="s", label=f"predicted few-shot {predicted['median']:.3f}")
    truth = result["model_free_truth"]
    if truth["status"] == "located":
        ax.errorbar([spec.D0 * 1.15], [truth["midpoint"]], yerr=[[truth["midpoint"] - truth["low"]], [truth["high"] - truth["midpoint"]]], color="black", capsize=4, fmt="*", ms=12, zorder=4, label=f"model-free truth {truth['midpoint']:.3f} [{truth['low']:.3f}, {truth['high']:.3f}]")
    ax.set_xscale("log")
    _save(fig, ax, "finetuning examples D (D0 = shots for few-shot)", "emergence loss E(D) (nats/token)", path)
    plt.close(fig)


def _table(rows: list[list], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value, digits=3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def write_report(out_dir: Path, summary: dict, fewshot_rows: list[dict], sweep: Sweep, finetuned_sweep: Sweep, fit_sweep: Sweep, fit: EmergenceFit) -> None:
    """Write every figure and `report.html` into `out_dir`."""
    result = summary
    plot_ladder(fewshot_rows, out_dir / "ladder_loss.png")
    plot_fewshot(fewshot_rows, result["fit_checkpoints"], result["true_fewshot_emergence_loss"], out_dir / "fewshot_vs_loss.png")
    plot_finetuned(finetuned_sweep, out_dir / "finetuned_vs_loss.png")
    plot_fit(fit, fit_sweep, out_dir / "fit.png")
    plot_prediction(fit, result, out_dir / "prediction.png")
    plot_cdf(fit, out_dir / "emergence_cdf.png")
    predicted = result["predicted_fewshot_emergence_loss"]
    diagnostics = result["law"]["diagnostics"]
    truth = result["model_free_truth"]
    bracket = f"[{_fmt(truth['low'])}, {_fmt(truth['high'])}] ({truth['status']})"
    shift = result["onset_shift"]
    headline = _table(
        [
            ["predicted few-shot emergence loss (median)", _fmt(predicted["median"])],
            ["90% interval", f"[{_fmt(predicted['q05'])}, {_fmt(predicted['q95'])}]"],
            ["model-free truth: midpoint of the bracket", _fmt(result["true_fewshot_emergence_loss"])],
            ["model-free truth: bracket (first few-shot checkpoint above chance, and the one before)", bracket],
            ["error against the model-free truth (nats)", _fmt(result["error_nats"])],
            [f"success (error ≤ {result['success_threshold_nats']} nats)", result["success"]],
            ["truth inside the 90% interval", result["within_interval"]],
            ["FLOPs ahead: family FLOPs at the truth / largest fitted checkpoint FLOPs", _fmt(result["flops_ahead"], 2)],
            ["FLOPs ahead: first emerged checkpoint / largest fitted checkpoint", _fmt(result["flops_ahead_first_emerged"], 2)],
            [f"model-based truth ({result['model_based_truth']['form']} form fitted to every few-shot row)", _fmt(result["model_based_truth"]["loss"])],
            ["error against the model-based truth (nats)", _fmt(result["model_based_truth"]["error_nats"])],
            ["fitted checkpoints", ", ".join(result["fit_checkpoints"])],
            ["finetuned checkpoints (by rule)", ", ".join(result["finetuned_checkpoints"])],
            ["loss spacing of finetuned checkpoints (nats)", _fmt(result["finetuned_checkpoint_loss_spacing_nats"], 4)],
            ["onset shift, smallest to largest D that emerged (nats / spacings)", f"{_fmt(shift['smallest_to_largest_D_nats'])} / {_fmt(shift['smallest_to_largest_D_spacings'], 1)}"],
            ["onset monotonic in D", shift["monotonic_in_D"]],
            [f"NUTS max R-hat / min bulk ESS ({diagnostics['chains']} chains × {diagnostics['draws_per_chain']} draws)", f"{diagnostics['r_hat_max']:.3f} / {diagnostics['ess_min']:.0f}"],
        ],
        ["quantity", "value"],
    )
    per_D = shift["per_D"]
    shifts = _table(
        [
            [D, (result["onset_per_D"].get(D) or {}).get("model", "not above chance"), _fmt(result["onset_loss_per_D"].get(D)),
             _fmt((per_D.get(D) or {}).get("nats")), _fmt((per_D.get(D) or {}).get("spacings"), 1), _fmt((per_D.get(D) or {}).get("flops_ratio"), 2),
             _fmt(result["fitted_elbow_per_D"].get(D, {}).get("median"))]
            for D in sorted(set(result["onset_loss_per_D"]) | set(result["fitted_elbow_per_D"]), key=int)
        ],
        ["D", "onset: weakest checkpoint above chance", "its loss (nats)", "shift vs few-shot (nats)", "shift (spacings)", "few-shot onset FLOPs / D's onset FLOPs", "law's E(D) (median)"],
    )
    forms = _table(
        [[name, _fmt(score["elpd_loo"], 1), _fmt(score["elpd_diff"], 1), score["chosen"], _fmt(score.get("weight"), 2)] for name, score in result["form_comparison"].items()],
        ["performance form", "PSIS-LOO elpd", "difference to the best", "chosen", "stacking weight"],
    )
    figures = "".join(f'<figure><img src="{name}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>' for name, caption in FIGURES.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>emergence-jax demo</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px}}img{{max-width:100%}}figure{{margin:1.5em 0}}</style>
</head><body>
<h1>Predicting emergence by finetuning: the demo</h1>
<p>Tiny LLaMA models pretrained on a seeded synthetic corpus; the task is in-context key&rarr;value recall
({html.escape(result['task'])}, {result['shots']}-shot, chance {result['chance']}). The law was fitted only to checkpoints whose
few-shot accuracy is at chance, within the fit horizon ({html.escape(str(result['law']['form']))} form, {html.escape(result['likelihood'])} likelihood).
The truth is model-free: the loss bracket of the first few-shot checkpoint above chance (its midpoint is the truth
point); the model-based truth is beside it. Results file:
<code>{html.escape(result['results_path'])}</code>. Wall time {result['wall_seconds']:.0f} s.</p>
{headline}
<h2>Shift of emergence with finetuning data</h2>
{shifts}
<h2>Performance forms compared</h2>
{forms}
{figures}
<h2>summary.json</h2><pre>{html.escape(json.dumps(result, indent=1)[:20000])}</pre>
</body></html>
"""
    atomic_write_text(out_dir / "report.html", page)
