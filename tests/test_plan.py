"""`plan`: the Fisher information and the expected-variance (Laplace) update against exact
references (the model's own likelihood summed over outcomes; importance-sampling Bayes), and the
greedy planner on known draws (no NUTS)."""

import numpy as np
import pytest

from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.model import Frame
from emergence_jax.laws.plan import Candidate, FormDraws, LaplaceDesign, plan_runs, weighted_width

SPEC = LawSpec(form="relu", law="log_power", D0=5.0, D_ref=8000.0)
FRAME = Frame.from_losses(np.array([2.45, 2.5, 2.6, 2.7, 2.85, 3.0]))
TRUTH = {"E0": 2.4, "shift": 0.4, "alpha": 1.5, "amplitude": 2.5}  # E(D) - E0: 250 0.17, 1000 0.24, 8000 0.4


def draws_around(truth: dict, spread: dict, n: int, seed: int = 0) -> FormDraws:
    """Draws of the relu law's latent sites, each parameter normal (E0) or log-normal around the truth."""
    rng = np.random.default_rng(seed)
    E0 = truth["E0"] + spread["E0"] * rng.standard_normal(n)
    latent = {"E0_std": FRAME.to_std(E0)}
    for name in ("shift", "alpha", "amplitude"):
        value = truth[name] * np.exp(spread[name] * rng.standard_normal(n))
        latent[f"{name}_std" if name != "alpha" else name] = value if name == "alpha" else value / FRAME.scale ** (1 if name == "shift" else -1)
    return FormDraws.from_latent(SPEC, FRAME, latent)


def test_weighted_width_against_references():
    rng = np.random.default_rng(0)
    x = rng.normal(2.4, 0.1, 20000)
    assert weighted_width(x, np.zeros_like(x)) == pytest.approx(np.percentile(x, 95) - np.percentile(x, 5), rel=1e-3)
    # reweighting N(2.4, 0.1) draws by a N(2.45, 0.1) likelihood gives N(2.425, 0.1/sqrt(2)): width 2·1.645·0.0707
    log_w = -0.5 * ((x - 2.45) / 0.1) ** 2
    assert weighted_width(x, log_w) == pytest.approx(2 * 1.645 * 0.1 / np.sqrt(2), rel=0.03)


@pytest.mark.parametrize("likelihood", ["binomial", "beta_binomial"])
def test_fisher_information_equals_the_models_own_likelihood_summed_over_outcomes(likelihood):
    """E_y[score scoreᵀ] with log p(y | z) from `laws.model` (numpyro's log_likelihood of the one
    model) for every y = 0..n, against `FormDraws.information`."""
    from emergence_jax.laws.model import pointwise_log_likelihood_latent
    from emergence_jax.laws.plan import _COORDINATES, _LOG
    from emergence_jax.laws.sweep import sweep_from_records

    spec = LawSpec(form="relu", law="log_power", D0=5.0, D_ref=8000.0, likelihood=likelihood)
    base = draws_around(TRUTH, {"E0": 0.03, "shift": 0.1, "alpha": 0.1, "amplitude": 0.1}, 3)
    latent = {name: _COORDINATES.get(name, _LOG)[1](base.z[:, k]) for k, name in enumerate(base.names)}
    if likelihood == "beta_binomial":
        latent["concentration"] = np.array([80.0, 300.0, 2000.0])
    form = FormDraws.from_latent(spec, FRAME, latent)
    candidate = Candidate("c", 2.62, 1000, 1000.0, 200, 0.25, 5)  # emerged under every draw (E(1000) ≈ 2.64)
    n = candidate.n_eval
    sweep = sweep_from_records([{"model": "c", "pretrain_loss": 2.62, "train_examples": 1000, "shots": 5, "accuracy": y / n, "n_eval": n, "chance": 0.25} for y in range(n + 1)])

    def log_pmf(z):
        values = {name: _COORDINATES.get(name, _LOG)[1](z[:, k]) for k, name in enumerate(form.names)}
        return pointwise_log_likelihood_latent(spec, True, values, sweep, FRAME)  # [draws, n + 1]

    h = 1e-3
    pmf = np.exp(log_pmf(form.z))
    scores = []
    for k in range(form.z.shape[1]):
        step = np.zeros(form.z.shape[1])
        step[k] = h
        scores.append((log_pmf(form.z + step) - log_pmf(form.z - step)) / (2 * h))
    scores = np.stack(scores, axis=-1)  # [draws, y, K]
    exact = np.einsum("dy,dyk,dyl->dkl", pmf, scores, scores)
    info = form.information(candidate)
    K = len(form.names) - (likelihood == "beta_binomial")  # the law's sites (φ is a nuisance here)
    np.testing.assert_allclose(info[:, :K, :K], exact[:, :K, :K], rtol=0.05 if likelihood == "binomial" else 0.15, atol=1e-3 * np.abs(exact).max())


def test_expected_variance_matches_exact_bayes_by_importance_sampling():
    """The preposterior expected Var(E0 | y) after one run, computed exactly by reweighting 20,000
    draws by every possible outcome y (binomial), against the Laplace update of the draws' covariance."""
    from scipy.stats import binom

    form = draws_around(TRUTH, {"E0": 0.04, "shift": 0.15, "alpha": 0.15, "amplitude": 0.15}, 20000, seed=1)
    E0 = form.E0()
    # runs above chance under (nearly) every draw, where the law is smooth in z; at the onset (a run
    # at chance under 30% of the draws) the exact variance is 0.00080 and the Laplace update 0.00096:
    # it misses what a run at chance tells (E(D) < L), see `plan`'s docstring
    for candidate in (Candidate("low", 2.45, 250, 250.0, 300, 0.25, 5), Candidate("mid", 2.5, 1000, 1000.0, 300, 0.25, 5), Candidate("high", 2.7, 8000, 8000.0, 300, 0.25, 5)):
        p = form.accuracy(form.z, candidate)
        y = np.arange(candidate.n_eval + 1)
        like = binom.pmf(y[None, :], candidate.n_eval, p[:, None])  # [draws, y]
        predictive = like.mean(axis=0)
        mean = (like * E0[:, None]).sum(0) / like.sum(0)
        second = (like * E0[:, None] ** 2).sum(0) / like.sum(0)
        keep = predictive > 1e-12
        exact = float(np.sum(predictive[keep] * (second - mean**2)[keep]))
        design = LaplaceDesign([form])
        assert design.variance_before == pytest.approx(E0.var(), rel=1e-3)
        assert design.expected_variance(candidate) == pytest.approx(exact, rel=0.1)
        assert design.expected_variance(candidate) < 0.95 * design.variance_before


def grid_candidates(losses, Ds, n_eval=1000):
    return [Candidate(f"ckpt@{L}", L, D, float(D), n_eval, 0.25, 5) for D in Ds for L in losses]


def test_greedy_plan_spreads_over_D_skips_runs_at_chance_and_accounts_for_the_batch():
    # after a D = 250 round: E0, shift and alpha uncertain (the start fit's situation)
    form = draws_around(TRUTH, {"E0": 0.1, "shift": 0.3, "alpha": 0.4, "amplitude": 0.1}, 1000, seed=2)
    losses = (2.45, 2.5, 2.6, 2.7, 2.85, 3.0)
    candidates = grid_candidates(losses, (500, 1000, 2000, 4000, 8000))
    plan = plan_runs([form], candidates, cost_budget=20000)
    runs = [(run["pretrain_loss"], run["train_examples"]) for run in plan["runs"]]
    widths = [plan["current_width"]] + [run["expected_width_after"] for run in plan["runs"]]
    assert plan["total_cost"] <= 20000 and len(set(runs)) == len(runs)
    assert all(b <= a + 1e-12 for a, b in zip(widths, widths[1:])) and widths[-1] < 0.7 * widths[0]
    # never a run at chance under (almost) every draw: loss 3.0 is above E(8000) ≈ 2.8
    assert not [run for run in runs if run[0] == 3.0]
    # the runs cover several distinct D (the exponent alpha needs them), not one D on every checkpoint
    assert len({D for _, D in runs}) >= 3
    # the batch effect: each run's expected gain is computed after the earlier ones, so gains fall
    gains = -np.diff(widths) / np.array([run["cost"] for run in plan["runs"]])
    assert gains[0] >= gains[-1]
    # a run that tells nothing leaves the expected width where it is
    useless = plan_runs([form], [Candidate("far", 3.5, 500, 500.0, 1000, 0.25, 5)], budget=1)
    assert useless["expected_width_after"] == pytest.approx(useless["current_width"], rel=1e-6)


def test_plan_beats_random_runs_of_the_same_cost_in_exact_bayes():
    """Exact Bayes by importance sampling over 20,000 prior-like draws (a small problem: 100
    questions per run, so the weights do not collapse): the true law is one draw, outcomes are
    simulated, and the posterior 90% width of E0 after plan's runs is compared with random runs of
    the same cost, over repeats."""
    from scipy.stats import binom

    form = draws_around(TRUTH, {"E0": 0.06, "shift": 0.25, "alpha": 0.3, "amplitude": 0.15}, 20000, seed=3)
    E0 = form.E0()
    losses = (2.45, 2.5, 2.6, 2.7, 2.85, 3.0)
    candidates = grid_candidates(losses, (500, 1000, 2000, 4000, 8000), n_eval=100)
    budget = 0.3 * sum(c.cost for c in candidates)
    plan = plan_runs([form], candidates, cost_budget=budget, max_draws=20000)
    chosen = [c for c in candidates if (c.model, c.train_examples) in {(r["model"], r["train_examples"]) for r in plan["runs"]}]
    p = np.stack([form.accuracy(form.z, c) for c in candidates], axis=1)  # [draws, candidates]
    rng = np.random.default_rng(4)
    wins, repeats = 0, 40
    for _ in range(repeats):
        truth = rng.integers(E0.size)
        y = rng.binomial(100, p[truth])
        random_set, spent = [], 0.0
        for i in rng.permutation(len(candidates)):
            if spent + candidates[i].cost <= plan["total_cost"]:
                random_set.append(i)
                spent += candidates[i].cost

        def width(index):
            log_w = binom.logpmf(y[index][None, :], 100, p[:, index]).sum(axis=1)
            return weighted_width(E0, log_w)

        wins += width([candidates.index(c) for c in chosen]) < width(random_set)
    assert wins >= 0.7 * repeats


@pytest.mark.slow
def test_plan_command_skips_done_runs(tmp_path, capsys):
    """End to end with NUTS: runs already in the results are never proposed; the plan narrows E0."""
    import csv
    import json

    from emergence_jax.cli import main
    from emergence_jax.laws.compare import simulated_family_rows
    from emergence_jax.records import write_records

    rows = simulated_family_rows(2.4, seed=5)  # six checkpoints, D in {250, 1000, 4000}
    done = [row for row in rows if row["train_examples"] in (0, 250)]
    write_records(tmp_path / "done.csv", done)
    with (tmp_path / "candidates.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "pretrain_loss", "train_examples"])
        for row in rows:
            if row["train_examples"] > 0:
                writer.writerow([row["model"], row["pretrain_loss"], row["train_examples"]])
    fast = ["--form", "relu", "--likelihood", "binomial", "--chains", "2", "--warmup", "200", "--samples", "200", "--no-progress"]
    args = ["plan", "--results", str(tmp_path / "done.csv"), "--candidates", str(tmp_path / "candidates.csv"), "--budget", "3", "--out", str(tmp_path / "plan.json"), *fast]
    assert main(args) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    done_keys = {(row["model"], row["train_examples"]) for row in done}
    assert len(plan["runs"]) == 3 and not {(run["model"], run["train_examples"]) for run in plan["runs"]} & done_keys
    assert len(plan["skipped"]) == 6
    assert plan["expected_width_after"] < plan["current_width"]
    assert "expected width after these 3 runs" in capsys.readouterr().out


@pytest.mark.slow
def test_plan_study_problem_stays_within_budget_and_narrows_the_start():
    """One problem of `emergence-jax study plan` at reduced sampler settings (the study itself,
    20 problems, is a command; its table is in the README)."""
    from emergence_jax.laws.plan_study import StudySettings, make_problem, run_problem

    settings = StudySettings(problems=1, chains=2, warmup=150, samples=150)
    result = run_problem(0, settings)
    problem = make_problem(0)
    start_keys = {(row["model"], row["train_examples"]) for row in problem["start"]}
    assert result["plan"]["runs"] and not {tuple(run) for run in result["plan"]["runs"]} & start_keys
    assert result["plan"]["cost"] <= settings.budget_fraction * result["full"]["cost"] + 1e-9
    assert abs(result["random"]["cost"] - result["plan"]["cost"]) <= max(run[1] for run in result["plan"]["runs"])
    assert result["plan"]["width"] < result["start"]["width"] and result["full"]["width"] < result["start"]["width"]
