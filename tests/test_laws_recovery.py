"""Maximum likelihood, bootstrap, loss scaling and the loss threshold recover known parameters."""

import numpy as np
import pytest

from emergence_jax.laws.bootstrap import bootstrap_fit
from emergence_jax.laws.functions import LawSpec, emergence_loss, law_coefficients
from emergence_jax.laws.loss_scaling import fit_loss_scaling
from emergence_jax.laws.mle import fit_mle
from emergence_jax.laws.simulate import simulate_sweep_rows
from emergence_jax.laws.sweep import sweep_from_records
from emergence_jax.laws.threshold import loss_threshold

SPEC = LawSpec(form="relu", law="log_power", D0=5, D_ref=8000)


def test_reparameterisation_matches_paper_form():
    E0, shift, alpha = 2.3, 0.45, 1.5
    c = law_coefficients(E0, shift, alpha, SPEC)
    D = np.array([5.0, 250.0, 8000.0, 1e5])
    assert np.allclose(emergence_loss(D, E0, shift, alpha, SPEC), c["k"] * np.log(D) ** alpha + c["C"])
    assert emergence_loss(np.array(0.0), E0, shift, alpha, SPEC) == pytest.approx(E0)
    power = LawSpec(law="power", D0=5, D_ref=8000)
    c = law_coefficients(E0, shift, 0.3, power)
    assert np.allclose(emergence_loss(D, E0, shift, 0.3, power), c["k"] * D**0.3 + c["C"])


@pytest.mark.parametrize(
    "truth, spec",
    [
        ({"E0": 2.30, "shift": 0.45, "alpha": 1.5, "amplitude": 2.5}, SPEC),
        ({"E0": 2.10, "shift": 0.30, "alpha": 0.8, "amplitude": 5.0}, SPEC),
        ({"E0": 2.40, "shift": 0.35, "alpha": 0.4, "amplitude": 3.0}, LawSpec(law="power", D0=5, D_ref=8000)),
        ({"E0": 2.30, "shift": 0.40, "alpha": 1.2, "amplitude": 3.0, "jump": 0.2}, LawSpec(form="jump", D0=5, D_ref=8000)),
    ],
)
def test_mle_recovers_known_law(truth, spec):
    losses = np.linspace(truth["E0"] + 0.05, truth["E0"] + 0.65, 12)
    sweep = sweep_from_records(simulate_sweep_rows(truth, spec, losses=losses, n_eval=2000, seed=3))
    fit = fit_mle(sweep, spec, seed=0)
    assert fit.params["E0"] == pytest.approx(truth["E0"], abs=0.03)
    assert fit.params["shift"] == pytest.approx(truth["shift"], rel=0.15)
    assert fit.params["amplitude"] == pytest.approx(truth["amplitude"], rel=0.15)
    if "jump" in truth:
        assert fit.params["jump"] == pytest.approx(truth["jump"], abs=0.05)
    assert fit_mle(sweep, spec, seed=0).params == fit.params  # deterministic for a seed


def test_fewshot_only_fit_finds_the_elbow_without_a_law():
    spec = LawSpec(form="relu", D0=5, D_ref=50)
    truth = {"E0": 2.5, "amplitude": 1.5}
    rows = simulate_sweep_rows(truth, spec, losses=np.linspace(2.0, 3.0, 30), train_examples=(), n_eval=5000, seed=1)
    sweep = sweep_from_records(rows)
    assert not sweep.finetuned
    fit = fit_mle(sweep, spec)
    assert set(fit.params) == {"E0", "amplitude"}
    assert fit.params["E0"] == pytest.approx(2.5, abs=0.02)


def test_bootstrap_interval_covers_truth():
    truth = {"E0": 2.30, "shift": 0.45, "alpha": 1.5, "amplitude": 2.5}
    sweep = sweep_from_records(simulate_sweep_rows(truth, SPEC, losses=np.linspace(2.36, 2.9, 10), seed=5))
    boot = bootstrap_fit(sweep, SPEC, resamples=40, seed=0, progress=False)
    q = boot["summary"]["E0"]
    assert q["q05"] < q["median"] < q["q95"]
    assert q["q05"] - 0.02 <= truth["E0"] <= q["q95"] + 0.02
    assert q["q95"] - q["q05"] < 0.3


def test_loss_scaling_recovers_known_law_and_inverts():
    params = np.array([1e8, 3e8, 1e9, 3e9, 1e10])
    loss = 1.7 + 400.0 * params**-0.3
    scaling = fit_loss_scaling(np.concatenate([params, params]), np.concatenate([loss, loss + 0.05]))
    assert scaling.irreducible == pytest.approx(1.7, abs=0.02)
    assert scaling.exponent == pytest.approx(0.3, rel=0.05)
    assert scaling.params_at(scaling.loss(2e9)) == pytest.approx(2e9, rel=1e-6)
    assert np.isnan(scaling.params_at(1.0))


def test_loss_threshold_recovers_eta_for_accuracy_and_a_decreasing_metric():
    rng = np.random.default_rng(0)
    loss = np.sort(rng.uniform(2.0, 3.5, 80))
    accuracy = 0.25 + 0.4 * np.maximum(2.6 - loss, 0) + rng.normal(0, 0.005, loss.size)
    brier = 0.75 - 0.5 * np.maximum(2.6 - loss, 0) + rng.normal(0, 0.005, loss.size)
    for values, sign in ((accuracy, 1), (brier, -1)):
        result = loss_threshold(loss, values)
        assert result["threshold_loss"] == pytest.approx(2.6, abs=0.03)
        assert np.sign(result["slope"]) == sign
        assert result["delta_aic_vs_line"] > 10
    smooth = loss_threshold(loss, 1.0 - 0.2 * loss + rng.normal(0, 0.005, loss.size))
    assert smooth["delta_aic_vs_line"] < 10
