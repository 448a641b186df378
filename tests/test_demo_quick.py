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


def test_quick_demo_end_to_end(tmp_path, capsys):
    """One test function, so that under pytest-xdist the demo runs once, on one worker."""
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    check_summary_figures_are_recomputed_from_the_results_file(tmp_path)
    check_rows_are_measurements_of_the_saved_checkpoints(tmp_path)
    check_report_shows_the_summary_numbers_and_every_plot(tmp_path)
    capsys.readouterr()
    check_a_finished_run_is_resumed_from_its_cache(tmp_path, capsys)


def check_summary_figures_are_recomputed_from_the_results_file(demo_dir):
    summary = json.loads((demo_dir / "summary.json").read_text())
    rows = read_records(summary["results_path"])
    sweep = sweep_from_records(rows, task="kv_recall", metric="accuracy")
    fewshot = sweep.fewshot()
    assert summary["law"]["form"] == QUICK.form and summary["likelihood"] == QUICK.likelihood
    truth = fewshot_emergence_point(sweep, make_spec(fewshot, form=QUICK.form, likelihood=QUICK.likelihood))
    assert summary["true_fewshot_emergence_loss"] == pytest.approx(truth, abs=1e-6)
    predicted = summary["predicted_fewshot_emergence_loss"]
    assert predicted["q05"] <= predicted["median"] <= predicted["q95"]
    assert summary["error_nats"] == pytest.approx(abs(predicted["median"] - truth), abs=1e-9)
    assert summary["within_interval"] == (predicted["q05"] <= truth <= predicted["q95"])
    assert summary["flops_ahead"] == pytest.approx(flops_ahead(sweep, summary["fit_checkpoints"], truth))
    # the fit saw only checkpoints at chance few-shot, all finetuned on every D and subset
    fit_rows = [r for r in rows if r["model"] in summary["fit_checkpoints"]]
    assert {r["train_examples"] for r in fit_rows} == {0, *QUICK.amounts}
    for r in fit_rows:
        if r["train_examples"] == 0:
            assert (r["accuracy"] - 0.25) / np.sqrt(0.25 * 0.75 / r["n_eval"]) < AT_CHANCE_Z
    assert summary["held_out_checkpoints"], "the truth must rest on checkpoints the fit never saw"
    check_onsets_are_read_from_the_rows(sweep, summary)
    assert len(rows) == len(QUICK.rungs[0].checkpoint_steps) + len(summary["fit_checkpoints"]) * len(QUICK.amounts) * QUICK.subsets


def check_onsets_are_read_from_the_rows(sweep, summary):
    """Each D's onset is the highest loss whose subset-pooled accuracy is AT_CHANCE_Z SE above chance."""
    for D, onset in summary["onset_loss_per_D"].items():
        rows = sweep.subset(sweep.train_examples == int(D))
        at = rows.loss == onset
        n = rows.n_eval[at].sum()
        accuracy = (rows.accuracy[at] * rows.n_eval[at]).sum() / n
        assert (accuracy - 0.25) / np.sqrt(0.25 * 0.75 / n) >= AT_CHANCE_Z
        for loss in rows.loss[rows.loss > onset]:
            at = rows.loss == loss
            n = rows.n_eval[at].sum()
            assert ((rows.accuracy[at] * rows.n_eval[at]).sum() / n - 0.25) / np.sqrt(0.25 * 0.75 / n) < AT_CHANCE_Z
        if D != "0":
            assert summary["onset_shift_per_D_nats"][D] == pytest.approx(onset - summary["onset_loss_per_D"]["0"])


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
