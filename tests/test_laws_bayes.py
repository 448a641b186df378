"""NumPyro posterior: recovery and summaries on a simulated sweep, and the PSIS-LOO form comparison
on real OLMo 2 checkpoints. (Calibration over simulated sweeps: tests/test_calibration_study.py.)"""

import warnings

import numpy as np
import pytest

from emergence_jax.laws.fit import SamplerSettings, fit_emergence_law
from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.options import example_path
from emergence_jax.laws.posterior import emergence_cdf, probability_emerged
from emergence_jax.laws.simulate import simulate_sweep_rows
from emergence_jax.laws.sweep import sweep_from_records
from emergence_jax.records import read_records

pytestmark = pytest.mark.slow  # NUTS fits on real data; `make test-slow`

SPEC = LawSpec(form="relu", law="log_power", D0=5, D_ref=4000)


def simulated_sweep(truth, seed):
    losses = np.linspace(truth["E0"] + 0.05, truth["E0"] + 0.65, 10)
    rows = simulate_sweep_rows(truth, SPEC, losses=losses, train_examples=(250, 1000, 4000), n_eval=500, seed=seed)
    return sweep_from_records(rows)


def test_posterior_summaries_are_consistent():
    truth = {"E0": 2.3, "shift": 0.4, "alpha": 1.5, "amplitude": 3.0}
    sweep = simulated_sweep(truth, seed=7)
    fit = fit_emergence_law(sweep, form="relu", D0=5, sampler=SamplerSettings(chains=4, warmup=250, samples=250))
    summary = fit.summary()
    E0 = summary["fewshot_emergence_loss"]
    assert E0["q05"] < E0["median"] < E0["q95"]
    assert abs(E0["median"] - truth["E0"]) < 0.08
    assert summary["diagnostics"]["chains"] == 4 and summary["diagnostics"]["r_hat_max"] < 1.05
    draws = fit.E0_draws()
    cdf = emergence_cdf(draws, np.array([E0["q95"], E0["median"], E0["q05"]]))
    assert cdf == pytest.approx([0.05, 0.5, 0.95], abs=0.01)
    assert probability_emerged(draws, E0["q05"] - 0.5)["probability"] == 1.0
    assert probability_emerged(draws, E0["q95"] + 0.5)["probability"] == 0.0


@pytest.mark.parametrize("run", ["olmo2_7b", "olmo2_13b"])
def test_olmo2_mmlu_mc_prefers_jump_and_emerges_at_the_observed_loss(run):
    rows = [r for r in read_records(example_path("olmo2_fewshot.csv")) if r["task"] == "mmlu_mc" and r["model"].startswith(run + "@")]
    sweep = sweep_from_records(rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_emergence_law(sweep, form="auto", sampler=SamplerSettings(chains=4, warmup=200, samples=200, progress=False))
    summary = fit.summary()
    assert summary["form"] == "jump" and summary["form_weights"]["jump"] >= 0.8
    assert summary["form_comparison"]["jump"]["elpd_loo"] > summary["form_comparison"]["relu"]["elpd_loo"]
    E0 = summary["fewshot_emergence_loss"]
    # the jump sits between the last checkpoint at chance and the first clearly above it (7B:
    # 2.733 -> 2.722; 13B: its first checkpoint after step 0, at 2.692, is already 2 points above
    # chance, 0.40 at 2.665); the smooth forms' small weight (13B: relu 0.08 at E0 2.85) may pull
    # the mixture's median up to the next checkpoint above, which for 13B is step 0 at 12.6
    assert 2.66 <= E0["by_form"]["jump"]["median"] <= 2.73
    assert 2.66 <= E0["median"] <= 2.76
