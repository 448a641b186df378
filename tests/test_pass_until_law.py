"""Task scaling law from PassUntil: recovery of c, alpha; prediction; curvature classification; CLI."""

import argparse
import json

import numpy as np
import pytest

from emergence_jax.errors import UserError
from emergence_jax.evaluate.pass_until import STATE_FORMAT
from emergence_jax.laws import pass_until_law
from emergence_jax.laws.pass_until_law import PassUntilData, assess_curvature, fit_pass_until_law, simulate_pass_until

SIZES = np.array([1e7, 3e7, 1e8, 3e8, 1e9])


def _simulate(log_c, alpha, *, curvature=0.0, r=2, cap=100_000, seed=0, sizes=SIZES):
    """PassUntil outcomes with log(-log p) = log_c - alpha log N + curvature z^2 (z = standardised log N)."""
    x = np.log(sizes)
    z = (x - x.mean()) / x.std()
    eta = log_c[:, None] - alpha[:, None] * x[None] + curvature * z[None] ** 2
    p = np.exp(-np.exp(eta))
    passes, samples = simulate_pass_until(p, r, cap, np.random.default_rng(seed))
    ids = tuple(str(i) for i in range(len(log_c)))
    design = np.full(len(sizes), r), np.full(len(sizes), cap)
    return PassUntilData("toy", ids, tuple(f"m{int(n)}" for n in sizes), sizes.copy(), passes, samples, "params", *design), p


def _instances(n, seed):
    """alpha in [0.4, 0.8], c set so p at the smallest model is 1e-5 .. 1e-3."""
    rng = np.random.default_rng(seed)
    alpha = rng.uniform(0.4, 0.8, n)
    minus_log_p_small = -np.log(10 ** rng.uniform(-5, -3, n))
    log_c = np.log(minus_log_p_small) + alpha * np.log(SIZES[0])
    return log_c, alpha


def test_fit_recovers_c_and_alpha_and_predicts_a_larger_model():
    log_c, alpha = _instances(60, seed=1)
    data, _ = _simulate(log_c, alpha, seed=2)
    fit = fit_pass_until_law(data)
    assert fit.identified.mean() > 0.9
    ok = fit.identified
    # r = 2 passes per point give alpha to about +-0.085 per instance; no bias across instances.
    assert np.median(np.abs(fit.alpha[ok] - alpha[ok])) < 0.1
    assert abs(np.mean(fit.alpha[ok] - alpha[ok])) < 0.04
    assert np.median(np.abs(fit.log_c[ok] - log_c[ok])) < 1.0  # log c ~ 10-20, and trades off against alpha
    z90 = 1.6449
    se = np.sqrt(fit.cov[:, 1, 1]) / fit.x_scale
    coverage = np.mean(np.abs(fit.alpha[ok] - alpha[ok]) <= z90 * se[ok])
    assert 0.75 <= coverage <= 0.99, coverage

    target = 1e10
    true_rate = np.exp(-np.exp(log_c - alpha * np.log(target))).mean()
    pred = fit.predict_task(target, confidence=0.9)
    assert pred["lower"] <= true_rate <= pred["upper"]
    assert pred["pass_rate"] == pytest.approx(true_rate, rel=0.25)


def test_single_instance_recovery_is_tight_with_many_passes():
    data, _ = _simulate(np.array([np.log(2e4)]), np.array([0.5]), r=50, cap=10**7, seed=5)
    fit = fit_pass_until_law(data)
    assert fit.alpha[0] == pytest.approx(0.5, abs=0.03)
    assert np.exp(fit.log_c[0]) == pytest.approx(2e4, rel=0.5)


def test_never_passing_instance_is_flagged_and_predicts_nothing():
    data = PassUntilData("toy", ("a",), ("s", "m", "l"), np.array([1e7, 1e8, 1e9]), np.zeros((1, 3), int), np.full((1, 3), 100_000))
    fit = fit_pass_until_law(data)
    assert not fit.identified[0]
    assert fit.predict_instances(1e9)["pu"][0] < 1e-5


@pytest.mark.parametrize("curvature,expected", [(-0.4, "accelerated emergence"), (0.0, "scaling"), (0.4, "sub-scaling")])
def test_curvature_is_classified_by_a_likelihood_ratio_test(curvature, expected):
    log_c, alpha = _instances(30, seed=7)
    data, _ = _simulate(log_c, alpha, curvature=curvature, seed=8)
    result = assess_curvature(data, confidence=0.9)
    assert result.classification == expected, result
    assert result.q_lower <= curvature <= result.q_upper


def _write_results(path, data, m):
    state = {
        "format": STATE_FORMAT,
        "settings": {"r": 2, "max_samples": 100_000, "round_budget": 1, "seed": 0, "confidence": 0.9, "instance_ids": list(data.instance_ids)},
        "metadata": {"model": data.models[m], "task": "toy", "params": float(data.x_raw[m])},
        "rounds": 1,
        "finished": True,
        "instances": [{"id": i, "passes": int(data.passes[j, m]), "samples": int(data.samples[j, m])} for j, i in enumerate(data.instance_ids)],
    }
    path.write_text(json.dumps(state))


def _fit_command(argv):
    """`emergence-jax fit-pass-until ARGV` through the subcommand's own parser."""
    parser = argparse.ArgumentParser()
    pass_until_law.add_arguments(parser)
    return pass_until_law.run(parser.parse_args(argv))


def test_fit_pass_until_command_writes_summary_and_plot(tmp_path, capsys):
    log_c, alpha = _instances(20, seed=3)
    data, _ = _simulate(log_c, alpha, curvature=-0.4, seed=4)
    files = []
    for m in range(len(SIZES)):
        files.append(tmp_path / f"m{m}.json")
        _write_results(files[-1], data, m)
    assert _fit_command(["--results", *map(str, files[::-1]), "--out", str(tmp_path / "fit"), "--predict", "1e10"]) == 0
    summary = json.loads((tmp_path / "fit" / "pass_until_fit.json").read_text())["tasks"][0]
    assert summary["x_values"] == sorted(summary["x_values"])
    assert summary["curvature"]["classification"] == "accelerated emergence"
    assert summary["predictions"][0]["x"] == 1e10
    assert (tmp_path / "fit" / summary["plot"]).stat().st_size > 10_000
    assert "accelerated emergence" in capsys.readouterr().out

    state = json.loads(files[0].read_text())
    del state["metadata"]["params"]
    files[0].write_text(json.dumps(state))
    with pytest.raises(UserError, match="m0.json: metadata field 'params'"):
        _fit_command(["--results", *map(str, files), "--out", str(tmp_path / "fit2")])
    assert not (tmp_path / "fit2" / "pass_until_fit.json").exists()
