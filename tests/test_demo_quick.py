"""`emergence-jax demo --quick` end to end (a few minutes): its report's figures are recomputed here
from the files it wrote and from its own checkpoints, so they cannot have been copied."""

import json
import re

import numpy as np
import pytest

from emergence_jax.checkpoints.orbax import restore_params
from emergence_jax.cli import main
from emergence_jax.demo.analysis import AT_CHANCE_Z
from emergence_jax.demo.corpus import corpus_sequences, episodes, heldout_stream
from emergence_jax.demo.report import FIGURES
from emergence_jax.demo.scoring import fewshot_accuracy, heldout_loss
from emergence_jax.demo.settings import QUICK
from emergence_jax.laws.backtest import flops_ahead
from emergence_jax.laws.fit import make_spec
from emergence_jax.laws.sweep import sweep_from_records
from emergence_jax.laws.threshold import fewshot_emergence_point
from emergence_jax.records import read_records

pytestmark = pytest.mark.slow  # the whole quick demo; `make test-slow`


def test_quick_demo_end_to_end(tmp_path, capsys):
    """One test function, so that under pytest-xdist the demo runs once, on one worker."""
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    check_summary_figures_are_recomputed_from_the_results_file(tmp_path)
    check_rows_are_measurements_of_the_saved_checkpoints(tmp_path)
    check_report_shows_the_summary_numbers_and_every_plot(tmp_path)
    capsys.readouterr()
    check_a_finished_run_is_resumed_from_its_cache(tmp_path, capsys)


def _pooled_above_chance(rows):
    """The model-free rule, re-derived: pooled accuracy >= 3 binomial SEs and >= 5% of (1 - chance) above chance."""
    n = rows.n_eval.sum()
    accuracy = (rows.accuracy * rows.n_eval).sum() / n
    return (accuracy - 0.25) / np.sqrt(0.25 * 0.75 / n) >= AT_CHANCE_Z and accuracy - 0.25 >= 0.05 * 0.75


def check_summary_figures_are_recomputed_from_the_results_file(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    rows = read_records(summary["results_path"])
    sweep = sweep_from_records(rows, task="kv_recall", metric="accuracy")
    fewshot = sweep.fewshot()
    # the model-free truth: the first checkpoint (weakest first) above chance, and the one before it
    losses = np.sort(np.unique(fewshot.loss))[::-1]
    first = next(i for i, loss in enumerate(losses) if _pooled_above_chance(fewshot.subset(fewshot.loss == loss)))
    assert first > 0, "the quick ladder must start at chance"
    assert summary["model_free_truth"]["low"] == pytest.approx(losses[first])
    assert summary["model_free_truth"]["high"] == pytest.approx(losses[first - 1])
    truth = (losses[first] + losses[first - 1]) / 2
    assert summary["true_fewshot_emergence_loss"] == pytest.approx(truth, abs=1e-9)
    # the reported form: QUICK's, or with "auto" the one with the largest stacking weight
    weights = {name: score["weight"] for name, score in summary["form_comparison"].items()}
    form = max(weights, key=weights.get) if QUICK.form == "auto" else QUICK.form
    assert summary["law"]["form"] == form and summary["form_comparison"][form]["chosen"] and summary["likelihood"] == QUICK.likelihood
    model_based = fewshot_emergence_point(sweep, make_spec(fewshot, form=form, likelihood=QUICK.likelihood))
    assert summary["model_based_truth"]["loss"] == pytest.approx(model_based, abs=1e-6)
    predicted = summary["predicted_fewshot_emergence_loss"]
    assert predicted["q05"] <= predicted["median"] <= predicted["q95"]
    assert summary["error_nats"] == pytest.approx(abs(predicted["median"] - truth), abs=1e-9)
    assert summary["within_interval"] == (predicted["q05"] <= truth <= predicted["q95"])
    assert summary["flops_ahead"] == pytest.approx(flops_ahead(sweep, summary["fit_checkpoints"], truth))
    check_finetuned_checkpoints_follow_the_rule(rows, summary)
    assert summary["held_out_checkpoints"], "the truth must rest on checkpoints the fit never saw"
    check_onsets_are_read_from_the_rows(sweep, summary)
    stages = summary["stage_seconds"]
    assert set(stages) == set(summary["stage_cpu_seconds"]) == {"pretrain", "score", "finetune", "fit", "report"}
    assert all(seconds > 0 for seconds in stages.values()) and sum(stages.values()) <= summary["wall_seconds"]
    rung = QUICK.rungs[0]
    assert len(rows) == len(rung.checkpoint_steps) + len(summary["finetuned_checkpoints"]) * len(QUICK.amounts) * QUICK.subsets


def check_finetuned_checkpoints_follow_the_rule(rows, summary):
    """Every checkpoint still at chance on the finetuning grid, strongest first, until (and including)
    the first where the largest D is at chance too, once at least two lie within the fit horizon."""
    fewshot = {r["model"]: r for r in rows if r["train_examples"] == 0}
    by_loss = sorted(fewshot.values(), key=lambda r: -r["pretrain_loss"])
    emerged = [r for r in by_loss if _pooled_above_chance(sweep_from_records([r]))]
    at_chance = [r for r in by_loss if r["pretrain_loss"] > emerged[0]["pretrain_loss"]][::-1]
    horizon = QUICK.fit_fraction * QUICK.rungs[0].steps
    grid = [r["model"] for r in at_chance if r["step"] % QUICK.finetune_every == 0 and r["step"] <= horizon]
    largest = max(QUICK.amounts)
    expected = []
    for name in grid[: QUICK.max_finetuned]:
        expected.append(name)
        within = sum(fewshot[m]["step"] <= horizon for m in expected)
        helps = _pooled_above_chance(sweep_from_records([r for r in rows if r["model"] == name and r["train_examples"] == largest]))
        if not helps and within >= QUICK.min_fit_checkpoints:
            break
    assert summary["finetuned_checkpoints"] == expected
    assert summary["fit_checkpoints"] == summary["finetuned_checkpoints"]
    fit_rows = [r for r in rows if r["model"] in summary["fit_checkpoints"]]
    assert {r["train_examples"] for r in fit_rows} == {0, *QUICK.amounts}


def check_onsets_are_read_from_the_rows(sweep, summary):
    """Each D's onset is the weakest checkpoint whose subset-pooled accuracy is above chance."""
    for D, onset in summary["onset_loss_per_D"].items():
        rows = sweep.subset(sweep.train_examples == int(D))
        assert _pooled_above_chance(rows.subset(rows.loss == onset))
        for loss in np.unique(rows.loss[rows.loss > onset]):
            assert not _pooled_above_chance(rows.subset(rows.loss == loss))
        if D != "0":
            assert summary["onset_shift"]["per_D"][D]["nats"] == pytest.approx(onset - summary["onset_loss_per_D"]["0"])


def check_rows_are_measurements_of_the_saved_checkpoints(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    rows = {r["model"]: r for r in read_records(summary["results_path"]) if r["train_examples"] == 0}
    name = summary["fit_checkpoints"][-1]
    model = restore_params(demo_dir / "checkpoints" / name)
    heldout = corpus_sequences(QUICK.world, QUICK.heldout_sequences, heldout_stream())
    accuracy, _ = fewshot_accuracy(model, episodes(QUICK.world, QUICK.eval_episodes, purpose="eval", seed=0))
    assert rows[name]["pretrain_loss"] == pytest.approx(heldout_loss(model, heldout), abs=1e-5)
    assert rows[name]["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    strongest = min(rows.values(), key=lambda r: r["pretrain_loss"])
    assert strongest["accuracy"] > 0.25 + 10 * np.sqrt(0.25 * 0.75 / strongest["n_eval"]), "the quick ladder must reach emergence"


def check_report_shows_the_summary_numbers_and_every_plot(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    page = (demo_dir / "report.html").read_text()
    for name in FIGURES:
        assert f'src="{name}"' in page
        assert (demo_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    numbers = set(re.findall(r"<td>(-?\d+\.\d{3})</td>", page))
    assert f"{summary['predicted_fewshot_emergence_loss']['median']:.3f}" in numbers
    assert f"{summary['true_fewshot_emergence_loss']:.3f}" in numbers
    assert f"{summary['model_based_truth']['loss']:.3f}" in numbers
    assert f"{summary['error_nats']:.3f}" in numbers
    diagnostics = summary["law"]["diagnostics"]
    assert diagnostics["chains"] == QUICK.sampler.chains >= 4, "R-hat needs several chains"
    assert f"{diagnostics['r_hat_max']:.3f} / {diagnostics['ess_min']:.0f}" in page


def check_a_finished_run_is_resumed_from_its_cache(demo_dir, capsys):
    before = (demo_dir / "sweep.csv").read_bytes()
    assert main(["demo", "--quick", "--out", str(demo_dir)]) == 0
    printed = capsys.readouterr().out
    assert "pretrained" not in printed and "finetuned" not in printed and "fit and report are up to date" in printed
    assert (demo_dir / "sweep.csv").read_bytes() == before
