"""PassUntil estimator, intervals, censoring, adaptive allocation and resume (no model needed)."""

import json

import numpy as np
import pytest
from scipy import stats

from emergence_jax.errors import UserError
from emergence_jax.evaluate.pass_until import estimate_pass_until, estimates_from_state, read_state, run_pass_until


def _simulate_outcome(p, r, cap, rng):
    """(passes, samples) of one inverse-sampling run: exact draw of K, censored at `cap`."""
    k = r + rng.negative_binomial(r, p)
    if k <= cap:
        return r, int(k)
    while True:  # passes in `cap` samples given fewer than r of them
        s = rng.binomial(cap, p)
        if s < r:
            return int(s), cap


@pytest.mark.parametrize("r,k", [(1, 1), (1, 37), (2, 2), (2, 500), (3, 40_000)])
def test_interval_ends_are_exact_negative_binomial_tails(r, k):
    est = estimate_pass_until(r, k, r=r, confidence=0.9)
    failures = k - r
    assert est.estimate == pytest.approx(r / k)
    # Lower end: P(K <= k) = 0.05; upper end: P(K >= k) = 0.05 (scipy's nbinom counts failures).
    assert stats.nbinom.cdf(failures, r, est.lower) == pytest.approx(0.05, rel=1e-6)
    if k > r:
        assert stats.nbinom.sf(failures - 1, r, est.upper) == pytest.approx(0.05, rel=1e-6)
    else:
        assert est.upper == 1.0
    assert est.lower < est.estimate <= est.upper


def test_censored_bound_is_exact_binomial_tail():
    est = estimate_pass_until(0, 100_000, r=1, confidence=0.95)
    assert est.censored and est.estimate == 0.0 and est.lower == 0.0
    assert est.upper_one_sided == pytest.approx(1 - 0.05 ** (1 / 100_000), rel=1e-9)  # ~3.0e-5
    partial = estimate_pass_until(1, 5000, r=2, confidence=0.9)
    assert partial.censored and partial.unbiased is None
    assert stats.binom.cdf(1, 5000, partial.upper_one_sided) == pytest.approx(0.1, rel=1e-6)


@pytest.mark.parametrize("r", [1, 2])
def test_intervals_cover_at_nominal_rate(r):
    rng = np.random.default_rng(0)
    probs = 10 ** rng.uniform(-4, -1, size=5_000)
    covered, one_sided_ok = [], []
    for p in probs:
        est = estimate_pass_until(*_simulate_outcome(p, r, 20_000, rng), r=r, confidence=0.9)
        covered.append(est.lower <= p <= est.upper)
        one_sided_ok.append(p <= est.upper_one_sided)
    coverage = np.mean(covered)
    print(f"coverage r={r}: {coverage:.4f}, one-sided {np.mean(one_sided_ok):.4f}")
    # Exact intervals are conservative only through discreteness, which is small here.
    assert 0.88 <= coverage <= 0.935, coverage
    assert np.mean(one_sided_ok) >= 0.88


def test_unbiased_estimator_is_unbiased_and_mle_is_not():
    rng = np.random.default_rng(1)
    p, r = 0.01, 2
    ks = r + rng.negative_binomial(r, p, size=200_000)
    assert np.mean((r - 1) / (ks - 1)) == pytest.approx(p, rel=0.01)
    assert np.mean(r / ks) > 1.3 * p  # E[2/K] ~ 2p log 2 / ... is clearly above p
    assert estimate_pass_until(2, 101, r=2).unbiased == pytest.approx(0.01)


class BernoulliSampler:
    """Completions 'yes'/'no' with a known pass probability per prompt; counts calls."""

    def __init__(self, fail_on_call=None):
        self.calls = 0
        self.fail_on_call = fail_on_call

    def sample(self, prompts, n, rng):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise KeyboardInterrupt  # a killed run
        return [["yes" if u < p else "no" for u in rng.random(n)] for p in prompts]


def _verify(prompt, completion):
    return completion == "yes"


PROBS = [0.3, 0.02, 0.003, 1e-3, 2e-4, 1e-6]


def test_run_stops_each_instance_at_r_passes_and_censors_at_cap(tmp_path):
    state = run_pass_until(PROBS, BernoulliSampler(), _verify, state_path=tmp_path / "s.json", r=2, max_samples=20_000, round_budget=512, seed=3)
    assert state["finished"]
    by_p = dict(zip(PROBS, estimates_from_state(state)))
    for p in PROBS[:4]:
        assert by_p[p].completed and by_p[p].passes == 2 and by_p[p].samples <= 20_000
    assert by_p[1e-6].censored and by_p[1e-6].samples == 20_000 and by_p[1e-6].passes == 0
    assert by_p[1e-6].upper_one_sided < 1.2e-4
    assert by_p[0.3].samples < 30 and by_p[1e-3].samples > 100  # resolved after very different budgets
    assert state["results"][0]["id"] == "0" and state["results"][5]["censored"] is True
    assert read_state(tmp_path / "s.json") == state


def test_killed_run_resumes_to_identical_results(tmp_path):
    kwargs = dict(r=1, max_samples=30_000, round_budget=300, seed=11, metadata={"model": "toy"})
    reference = run_pass_until(PROBS, BernoulliSampler(), _verify, state_path=tmp_path / "ref.json", **kwargs)

    path = tmp_path / "killed.json"
    with pytest.raises(KeyboardInterrupt):
        run_pass_until(PROBS, BernoulliSampler(fail_on_call=4), _verify, state_path=path, **kwargs)
    partial = json.loads(path.read_text())
    assert not partial["finished"] and partial["rounds"] >= 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    run_pass_until(PROBS, BernoulliSampler(), _verify, state_path=path, max_rounds=2, **kwargs)
    resumed = run_pass_until(PROBS, BernoulliSampler(), _verify, state_path=path, **kwargs)
    assert resumed == reference

    with pytest.raises(UserError, match="different settings.*max_samples"):
        run_pass_until(PROBS, BernoulliSampler(), _verify, state_path=path, **(kwargs | {"max_samples": 10}))
