"""`plan`: importance-reweighting arithmetic against references and the greedy planner on a toy
likelihood (no NUTS)."""

import numpy as np
import pytest

from emergence_jax.laws.plan import Candidate, effective_sample_size, plan_runs, weighted_width


def test_weighted_width_and_ess_against_references():
    rng = np.random.default_rng(0)
    x = rng.normal(2.4, 0.1, 20000)
    assert weighted_width(x, np.zeros_like(x)) == pytest.approx(np.percentile(x, 95) - np.percentile(x, 5), rel=1e-3)
    # reweighting N(2.4, 0.1) draws by a N(2.45, 0.1) likelihood gives N(2.425, 0.1/sqrt(2)): width 2·1.645·0.0707
    log_w = -0.5 * ((x - 2.45) / 0.1) ** 2
    assert weighted_width(x, log_w) == pytest.approx(2 * 1.645 * 0.1 / np.sqrt(2), rel=0.03)
    assert effective_sample_size(np.zeros(100)) == pytest.approx(100)
    assert effective_sample_size(np.array([0.0] + [-np.inf] * 9)) == pytest.approx(1)


class _ToyFit:
    """E0 draws and a binomial outcome model p = σ(k·(E0 − L)/D-scale), for the planner's logic
    without NUTS: runs that are informative about E0 are those near it."""

    def __init__(self, E0):
        self.E0 = E0

    def E0_draws(self):
        return self.E0

    def pointwise_log_likelihood(self, sweep):
        from scipy.stats import binom

        p = 0.25 + 0.7 / (1 + np.exp(-(self.E0[:, None] + 0.05 * np.log(sweep.train_examples[None, :]) - sweep.loss[None, :]) / 0.02))
        return binom.logpmf(sweep.correct[None, :], sweep.n_eval[None, :], p)


def test_greedy_plan_prefers_informative_cheap_runs_and_accounts_for_the_batch():
    rng = np.random.default_rng(1)
    fit = _ToyFit(rng.uniform(2.3, 2.5, 800))
    # E(D) = E0 + 0.05·log D: at D = 100, E lies in [2.53, 2.73]; a run at loss 2.63 splits it.
    informative = Candidate("mid", 2.63, 100, 1.0, 200, 0.25, 5)
    useless = Candidate("far", 3.5, 100, 1.0, 200, 0.25, 5)  # far above every E(D): always at chance
    pricey = Candidate("mid-expensive", 2.63, 101, 50.0, 200, 0.25, 5)
    plan = plan_runs(fit, [useless, pricey, informative], budget=2, scenarios=64, max_draws=800)
    assert plan["runs"][0]["model"] == "mid"
    assert plan["expected_width_after"] < 0.6 * plan["current_width"]
    assert plan["runs"][1]["expected_width_after"] <= plan["runs"][0]["expected_width_after"] + 1e-9
    far = plan_runs(fit, [useless], budget=1, scenarios=64, max_draws=800)
    assert far["expected_width_after"] == pytest.approx(far["current_width"], rel=0.02)


@pytest.mark.slow
def test_plan_command_skips_done_runs_and_refits_on_more_rows(tmp_path, capsys):
    """End to end with NUTS: runs already in the results are never proposed, and a refit (forced by
    --min-ess above the draws' count) fits a sweep with more rows than the first fit."""
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
    args = ["plan", "--results", str(tmp_path / "done.csv"), "--candidates", str(tmp_path / "candidates.csv"), "--budget", "3", "--out", str(tmp_path / "plan.json"), "--scenarios", "32", "--min-ess", "399", *fast]
    assert main(args) == 0
    plan = json.loads((tmp_path / "plan.json").read_text())
    done_keys = {(row["model"], row["train_examples"]) for row in done}
    assert len(plan["runs"]) == 3 and not {(run["model"], run["train_examples"]) for run in plan["runs"]} & done_keys
    assert len(plan["skipped"]) == 6 and plan["refits"] >= 1
    assert plan["expected_width_after"] < plan["current_width"]
    assert "expected width after these 3 runs" in capsys.readouterr().out


@pytest.mark.slow
def test_plan_study_problem_stays_within_budget_and_narrows_the_start():
    """One problem of `emergence-jax study plan` at reduced sampler settings (the study itself,
    20 problems, is a command; its table is in the README)."""
    from emergence_jax.laws.plan_study import StudySettings, make_problem, run_problem

    settings = StudySettings(problems=1, chains=2, warmup=150, samples=150, scenarios=16)
    result = run_problem(0, settings)
    problem = make_problem(0)
    start_keys = {(row["model"], row["train_examples"]) for row in problem["start"]}
    assert result["plan"]["runs"] and not {tuple(run) for run in result["plan"]["runs"]} & start_keys
    assert result["plan"]["cost"] <= settings.budget_fraction * result["full"]["cost"] + 1e-9
    assert abs(result["random"]["cost"] - result["plan"]["cost"]) <= max(run[1] for run in result["plan"]["runs"])
    assert result["plan"]["width"] < result["start"]["width"] and result["full"]["width"] < result["start"]["width"]
