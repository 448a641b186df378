"""Active Bayesian design: which finetuning runs to do next.

A run (checkpoint at pretraining loss L, finetuned on D examples, evaluated on n_eval questions) is
worth what it is expected to take off the posterior width W = q95 − q05 of the few-shot emergence
loss E0, per unit of cost. We estimate that with the posterior draws we already have, without
refitting:

1. The outcome pmf. For every draw i and every possible count y = 0..n_eval of correct answers,
   log p(y | θ_i) comes from the fit's own likelihood (`EmergenceFit.pointwise_log_likelihood` on
   n_eval + 1 rows that differ only in `correct`): the likelihood is written once, in `laws.model`.
2. Scenarios. S scenarios each pick a "true" draw j_s (by the current weights) and simulate the
   outcome of every run from p(y | θ_{j_s}) (posterior predictive). The same scenarios serve every
   candidate (common random numbers), so candidates are compared on equal terms.
3. Reweighting. Under scenario s, adding a run with outcome y multiplies draw i's weight by
   p(y | θ_i) (importance sampling, the posterior given the old and the new data); the expected
   width after the run is the mean over scenarios of the weighted q95 − q05 of E0.
4. Greedy batch. The run with the largest (W_now − W_after) / cost is chosen; its simulated outcome
   is kept in every scenario, so the next choice is conditioned on it (the batch effect: a second
   run that tells the same thing is worth little). Repeat until `budget` runs (or `cost_budget`).
5. Degeneracy. When the median effective sample size of the scenario weights falls below
   `min_ess`, the draws no longer describe the posterior: the law is refitted (NUTS) on the rows
   plus the chosen runs' simulated outcomes of the median-width scenario, and the greedy search
   continues from the new draws.

Runs already in the results (same model and D, or same loss and D) are never proposed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from emergence_jax.errors import UserError

DEFAULT_SCENARIOS = 128
DEFAULT_MAX_DRAWS = 1000
DEFAULT_MIN_ESS = 50.0


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A possible finetuning run: checkpoint id, pretraining loss (the fit's loss unit), D examples,
    cost (any unit; default D), evaluation questions and chance accuracy."""

    model: str
    pretrain_loss: float
    train_examples: int
    cost: float
    n_eval: int
    chance: float
    shots: int


def weighted_width(values: np.ndarray, log_weights: np.ndarray) -> float:
    """q95 − q05 of `values` under normalised exp(`log_weights`) (weighted empirical CDF, linear
    interpolation at the mid-points of each draw's mass)."""
    w = np.exp(log_weights - log_weights.max())
    order = np.argsort(values)
    v, w = values[order], w[order]
    cdf = (np.cumsum(w) - 0.5 * w) / w.sum()
    q05, q95 = np.interp([0.05, 0.95], cdf, v)
    return float(q95 - q05)


def effective_sample_size(log_weights: np.ndarray) -> float:
    """Kish's ESS of importance weights exp(`log_weights`)."""
    w = np.exp(log_weights - log_weights.max())
    return float(w.sum() ** 2 / np.sum(w**2))


def candidate_sweep(candidate: Candidate, *, task: str | None = None):
    """n_eval + 1 rows at the candidate's (loss, D), one per possible correct count."""
    from emergence_jax.laws.sweep import sweep_from_records

    n = candidate.n_eval
    rows = [
        {"model": candidate.model, "pretrain_loss": candidate.pretrain_loss, "train_examples": candidate.train_examples, "shots": candidate.shots, "accuracy": y / n, "n_eval": n, "chance": candidate.chance}
        for y in range(n + 1)
    ]
    return sweep_from_records(rows)


class OutcomeTable:
    """log p(y | draw) for y = 0..n_eval of each candidate under a set of draws, cached."""

    def __init__(self, fit, keep: np.ndarray):
        self.fit, self.keep = fit, keep
        self._cache: dict[Candidate, np.ndarray] = {}

    def __call__(self, candidate: Candidate) -> np.ndarray:
        if candidate not in self._cache:
            table = np.asarray(self.fit.pointwise_log_likelihood(candidate_sweep(candidate)), float)[self.keep]
            # the pmf over y sums to 1 under each draw (up to float32 round-off): renormalise it
            table -= np.logaddexp.reduce(table, axis=1, keepdims=True)
            self._cache[candidate] = table
        return self._cache[candidate]


@dataclasses.dataclass
class _State:
    E0: np.ndarray  # [draws]
    outcome: OutcomeTable
    truth_index: np.ndarray  # [scenarios] the scenario's "true" draw
    log_weights: np.ndarray  # [scenarios, draws]
    outcomes: list  # per chosen run: [scenarios] simulated correct counts


def _draws_of(fit, max_draws: int, rng) -> np.ndarray:
    n = fit.E0_draws().size
    return np.sort(rng.choice(n, size=min(n, max_draws), replace=False))


def _start(fit, max_draws: int, scenarios: int, rng) -> _State:
    keep = _draws_of(fit, max_draws, rng)
    E0 = np.asarray(fit.E0_draws(), float)[keep]
    truth = rng.integers(E0.size, size=scenarios)
    return _State(E0=E0, outcome=OutcomeTable(fit, keep), truth_index=truth, log_weights=np.zeros((scenarios, E0.size)), outcomes=[])


def _simulate(state: _State, candidate: Candidate, uniforms: np.ndarray) -> np.ndarray:
    """Each scenario's outcome of `candidate` under its true draw (inverse-CDF with fixed uniforms)."""
    pmf = np.exp(state.outcome(candidate)[state.truth_index])
    cdf = np.cumsum(pmf, axis=1)
    cdf /= cdf[:, -1:]
    return np.minimum((cdf < uniforms[:, None]).sum(axis=1), candidate.n_eval)


def _expected_after(state: _State, candidate: Candidate, uniforms: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(expected width after the run, the scenarios' simulated outcomes, median ESS after)."""
    y = _simulate(state, candidate, uniforms)
    table = state.outcome(candidate)  # [draws, n_eval + 1]
    log_w = state.log_weights + table[:, y].T
    widths = [weighted_width(state.E0, lw) for lw in log_w]
    ess = float(np.median([effective_sample_size(lw) for lw in log_w]))
    return float(np.mean(widths)), y, ess


def plan_runs(
    fit,
    candidates: list[Candidate],
    *,
    budget: int | None = None,
    cost_budget: float | None = None,
    scenarios: int = DEFAULT_SCENARIOS,
    max_draws: int = DEFAULT_MAX_DRAWS,
    min_ess: float = DEFAULT_MIN_ESS,
    refit=None,
    seed: int = 0,
) -> dict:
    """Choose runs greedily (module docstring). `fit` is an `EmergenceFit` (or anything with
    `E0_draws()` and `pointwise_log_likelihood(sweep)`); `refit(extra_rows)` returns a new fit of
    the data plus simulated rows (None: never refit). Returns the JSON-able plan."""
    if not candidates:
        raise UserError("no candidate runs left (every candidate is already in the results)")
    if budget is None and cost_budget is None:
        raise UserError("give --budget (runs) or a cost budget")
    rng = np.random.default_rng(seed)
    state = _start(fit, max_draws, scenarios, rng)
    current = float(np.mean([weighted_width(state.E0, lw) for lw in state.log_weights]))
    uniforms = {c: rng.random(scenarios) for c in candidates}
    chosen, spent, refits = [], 0.0, 0
    remaining = list(candidates)
    width_now = current
    while remaining and (budget is None or len(chosen) < budget):
        affordable = [c for c in remaining if cost_budget is None or spent + c.cost <= cost_budget * (1 + 1e-9)]
        if not affordable:
            break
        scored = []
        for c in affordable:
            width, y, ess = _expected_after(state, c, uniforms[c])
            scored.append(((width_now - width) / c.cost, -c.cost, width, y, ess, c))
        gain, _, width, y, ess, best = max(scored, key=lambda item: (item[0], item[1]))
        state.log_weights = state.log_weights + state.outcome(best)[:, y].T
        state.outcomes.append((best, y))
        chosen.append({"model": best.model, "train_examples": best.train_examples, "pretrain_loss": best.pretrain_loss, "cost": best.cost, "n_eval": best.n_eval, "expected_width_after": width, "ess_after": ess})
        spent += best.cost
        remaining.remove(best)
        width_now = width
        if ess < min_ess and refit is not None and remaining:
            state, width_now = _refit(state, refit, max_draws, scenarios, rng)
            chosen[-1]["refit_after"] = True
            refits += 1
    return {"runs": chosen, "current_width": current, "expected_width_after": width_now, "total_cost": spent, "scenarios": scenarios, "draws": int(state.E0.size), "refits": refits}


def _refit(state: _State, refit, max_draws: int, scenarios: int, rng) -> tuple[_State, float]:
    """Refit on the rows plus the chosen runs' outcomes of the median-width scenario; the new
    draws' scenarios are conditioned on nothing further (the refit already holds those runs)."""
    widths = np.array([weighted_width(state.E0, lw) for lw in state.log_weights])
    s = int(np.argsort(widths)[widths.size // 2])
    extra = [
        {"model": c.model, "pretrain_loss": c.pretrain_loss, "train_examples": c.train_examples, "shots": c.shots, "accuracy": int(y[s]) / c.n_eval, "n_eval": c.n_eval, "chance": c.chance}
        for c, y in state.outcomes
    ]
    new_fit = refit(extra)
    new = _start(new_fit, max_draws, scenarios, rng)
    new.outcomes = list(state.outcomes)
    return new, float(np.mean([weighted_width(new.E0, lw) for lw in new.log_weights]))


def read_candidates(path: str, *, done: list[dict], n_eval: int, chance: float, shots: int) -> tuple[list[Candidate], list[dict]]:
    """Candidates CSV (model, pretrain_loss, train_examples[, cost, n_eval]) minus runs already in
    `done` (results rows): (candidates, skipped rows)."""
    from emergence_jax.io import read_csv_table

    raw = read_csv_table(path, required=("model", "pretrain_loss", "train_examples"), what="candidates file", fix="candidates need model,pretrain_loss,train_examples[,cost]")
    done_keys = {(r["model"], int(r["train_examples"])) for r in done} | {(round(float(r["pretrain_loss"]), 9), int(r["train_examples"])) for r in done}
    out, skipped, seen = [], [], set()
    for line, row in raw:
        where = f"{path}: line {line}"
        try:
            loss = float(row["pretrain_loss"])
            D = float(row["train_examples"])
            cost = float(row["cost"]) if row.get("cost") not in (None, "") else D
            evals = int(float(row["n_eval"])) if row.get("n_eval") not in (None, "") else n_eval
        except (TypeError, ValueError):
            raise UserError(f"{where}: pretrain_loss, train_examples, cost and n_eval must be numbers") from None
        if not (math.isfinite(loss) and loss > 0):
            raise UserError(f"{where}: pretrain_loss must be a positive loss, got {row['pretrain_loss']!r}")
        if D != int(D) or D < 1:
            raise UserError(f"{where}: train_examples must be a whole number >= 1 (a finetuning run), got {row['train_examples']!r}")
        if not (math.isfinite(cost) and cost > 0):
            raise UserError(f"{where}: cost must be a positive number, got {row.get('cost')!r}")
        if evals < 1:
            raise UserError(f"{where}: n_eval must be at least 1")
        key = (row["model"], int(D))
        if key in done_keys or (round(loss, 9), int(D)) in done_keys:
            skipped.append({"model": row["model"], "train_examples": int(D), "reason": "already in the results"})
            continue
        if key in seen:
            raise UserError(f"{where}: candidate ({row['model']}, D={int(D)}) appears twice")
        seen.add(key)
        out.append(Candidate(model=row["model"], pretrain_loss=loss, train_examples=int(D), cost=cost, n_eval=evals, chance=chance, shots=shots))
    return out, skipped
