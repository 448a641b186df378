"""Active Bayesian design: which finetuning runs to do next.

A run (checkpoint at pretraining loss L, finetuned on D examples, evaluated on n_eval questions) is
worth what it is expected to take off the posterior width W = q95 − q05 of the few-shot emergence
loss E0, per unit of cost. We estimate that from the posterior draws we already have, without
refitting, by the expected Laplace (Fisher-information) update of the posterior:

1. Coordinates. Each form's latent draws (`PosteriorFit.latent`: E0_std, shift_std, α, amplitude_std,
   ...) are mapped to z, unbounded coordinates (log of positive parameters, logit of the jump), where
   the posterior is closest to Gaussian. Its current precision is P = Cov(z)⁻¹ (the draws' covariance).
2. What a run tells. Under draw θ_i, a run's outcome carries Fisher information
   I(θ_i) = i_p · ∇_z p ∇_z pᵀ about z, with p the law's expected accuracy at (L, D) (`laws.functions`,
   the model's own function; gradient by central differences) and i_p the information of one row
   about p: n/(p(1 − p)) (binomial) or n(φ + 1)/((φ + n) p(1 − p)) (beta-binomial, concentration φ).
   A run above the true emergence loss at its D sits at chance under that draw and tells nothing
   there; runs near the uncertain onset tell something under part of the draws.
3. Expected variance. If θ_i were the truth, the posterior after a batch B would have variance
   V_i(B) = [(P + Σ_{b∈B} I_b(θ_i))⁻¹]_{E0,E0}; the expected posterior variance is its mean over
   the draws (the preposterior average over the current posterior; forms by their stacking weight,
   plus the between-form variance of E0, which this does not reduce). The expected width after B is
   W_now · sqrt(E V(B) / V_now) (V_now = the current variance of E0, so a run that tells nothing
   leaves W unchanged).
4. Greedy batch. The run with the largest (W_now − W_after) / cost is chosen and its information
   is added under every draw, so the next choice is conditioned on it (the batch effect: a second
   run that tells the same thing is worth little). Repeat until `budget` runs (or `cost_budget`),
   or until no affordable run is expected to take 0.1% of the current width off.

Why not reweight the draws by simulated outcomes (importance sampling, the first version): one run
with 1,000 questions pins its accuracy to ±0.014, which cuts the draws' effective sample size ~5–10×,
so after two or three chosen runs the weighted widths came from ~10 effective draws (biased low and
noisy, ~10% against plan-vs-random differences of the same size) and each problem needed 3–4 NUTS
refits; at half the full grid's cost it beat random runs in 10/20 simulated problems. The Laplace
update never degenerates and needs no refit; `emergence-jax study plan` measures what it gives.

Runs already in the results (same model and D, or same loss and D) are never proposed.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from emergence_jax.errors import UserError

DEFAULT_MAX_DRAWS = 1000
# central-difference step in z for the gradient of the expected accuracy
GRADIENT_STEP = 1e-5
# stop choosing when the best run is expected to take less than this share of the current width off
MIN_GAIN = 1e-3


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


# latent site -> (to z, from z): unbounded coordinates for the Gaussian (Laplace) update
_LOG = (np.log, np.exp)
_IDENTITY = (lambda x: x, lambda z: z)
_LOGIT = (lambda x: np.log(x) - np.log1p(-x), lambda z: 1.0 / (1.0 + np.exp(-z)))
_COORDINATES = {"E0_std": _IDENTITY, "floor_shift": _IDENTITY, "jump": _LOGIT}


@dataclasses.dataclass
class FormDraws:
    """One form's posterior draws in z coordinates, as the planner uses them: `z` [draws, K] in the
    order of `names` (latent sites), the spec and loss frame of the fit, and the form's weight."""

    spec: object
    frame: object
    names: tuple
    z: np.ndarray
    weight: float

    @classmethod
    def from_latent(cls, spec, frame, latent: dict, weight: float = 1.0) -> FormDraws:
        names = tuple(latent)
        z = np.stack([_COORDINATES.get(name, _LOG)[0](np.asarray(latent[name], float)) for name in names], axis=1)
        return cls(spec=spec, frame=frame, names=names, z=z, weight=weight)

    @property
    def e0(self) -> int:
        return self.names.index("E0_std")

    def E0(self) -> np.ndarray:
        """E0 draws in the fit's loss unit."""
        return self.frame.to_loss(self.z[:, self.e0])

    def accuracy(self, z: np.ndarray, candidate: Candidate) -> np.ndarray:
        """The law's expected accuracy of `candidate` under each row of `z` (the model's clip)."""
        from emergence_jax.laws.functions import predicted_accuracy
        from emergence_jax.laws.model import PROB_EPS

        latent = {name: _COORDINATES.get(name, _LOG)[1](z[:, k]) for k, name in enumerate(self.names)}
        params = {("E0" if name == "E0_std" else name.removesuffix("_std")): value for name, value in latent.items()}
        u = float(self.frame.to_std(candidate.pretrain_loss))
        p = predicted_accuracy(params, u, float(candidate.train_examples), candidate.chance, self.spec)
        return np.clip(p, PROB_EPS, 1 - PROB_EPS)

    def information(self, candidate: Candidate) -> np.ndarray:
        """Fisher information of the candidate's outcome about z under each draw: [draws, K, K]."""
        p = self.accuracy(self.z, candidate)
        grad = np.empty_like(self.z)
        for k in range(self.z.shape[1]):
            step = np.zeros(self.z.shape[1])
            step[k] = GRADIENT_STEP
            grad[:, k] = (self.accuracy(self.z + step, candidate) - self.accuracy(self.z - step, candidate)) / (2 * GRADIENT_STEP)
        n = float(candidate.n_eval)
        per_p = n / (p * (1 - p))
        if "concentration" in self.names:
            phi = np.exp(self.z[:, self.names.index("concentration")])
            per_p = per_p * (phi + 1) / (phi + n)
        return per_p[:, None, None] * grad[:, :, None] * grad[:, None, :]


def posterior_forms(fit, max_draws: int, rng) -> list[FormDraws]:
    """Each form's draws of an `EmergenceFit` (its stacking mixture, at most `max_draws` in all)."""
    mixture = np.asarray(fit.mixture)
    if mixture.shape[0] > max_draws:
        mixture = mixture[np.sort(rng.choice(mixture.shape[0], size=max_draws, replace=False))]
    out = []
    for f, form in enumerate(fit.forms):
        index = mixture[mixture[:, 0] == f, 1]
        if index.size < 2:
            continue
        posterior = fit.fits[form]
        latent = {name: value[index] for name, value in posterior.latent_draws().items()}
        out.append(FormDraws.from_latent(posterior.spec, posterior.frame, latent, weight=index.size / mixture.shape[0]))
    return out


class LaplaceDesign:
    """Expected posterior variance of E0 after a batch of runs (module docstring, steps 1–3)."""

    def __init__(self, forms: list[FormDraws]):
        self.forms = forms
        self.precision, self.added, self.variance_now = [], [], []
        for form in forms:
            cov = np.atleast_2d(np.cov(form.z, rowvar=False))
            self.precision.append(np.linalg.pinv(cov))
            self.added.append(np.zeros((form.z.shape[0],) + cov.shape))
            self.variance_now.append(float(cov[form.e0, form.e0]) * form.frame.scale**2)
        means = np.array([form.E0().mean() for form in forms])
        weights = np.array([form.weight for form in forms])
        self.between = float(np.sum(weights * (means - np.sum(weights * means)) ** 2))
        self._info: dict[Candidate, list[np.ndarray]] = {}

    def information(self, candidate: Candidate) -> list[np.ndarray]:
        if candidate not in self._info:
            self._info[candidate] = [form.information(candidate) for form in self.forms]
        return self._info[candidate]

    def expected_variance(self, candidate: Candidate | None = None) -> float:
        """E over the draws of Var(E0 | batch so far [+ candidate]) (loss unit²)."""
        total = self.between
        for k, form in enumerate(self.forms):
            extra = self.added[k] + (self.information(candidate)[k] if candidate is not None else 0.0)
            posterior = self.precision[k][None] + extra
            unit = np.zeros(posterior.shape[-1])
            unit[form.e0] = 1.0
            solved = np.linalg.solve(posterior, np.broadcast_to(unit, posterior.shape[:-1])[..., None])[..., 0]
            total += form.weight * float(np.mean(solved[:, form.e0])) * form.frame.scale**2
        return total

    def add(self, candidate: Candidate) -> None:
        for k, info in enumerate(self.information(candidate)):
            self.added[k] = self.added[k] + info

    @property
    def variance_before(self) -> float:
        return self.between + sum(form.weight * v for form, v in zip(self.forms, self.variance_now))


def plan_runs(fit, candidates: list[Candidate], *, budget: int | None = None, cost_budget: float | None = None, max_draws: int = DEFAULT_MAX_DRAWS, seed: int = 0) -> dict:
    """Choose runs greedily (module docstring). `fit` is an `EmergenceFit` (forms, fits with latent
    draws, stacking mixture) or a list of `FormDraws`. Returns the JSON-able plan: the runs in order
    of choice, each with the expected width after it, the current and expected final widths (loss
    unit), the total cost."""
    if not candidates:
        raise UserError("no candidate runs left (every candidate is already in the results)")
    if budget is None and cost_budget is None:
        raise UserError("give --budget (runs) or a cost budget")
    rng = np.random.default_rng(seed)
    forms = list(fit) if isinstance(fit, (list, tuple)) else posterior_forms(fit, max_draws, rng)
    E0 = np.concatenate([form.E0() for form in forms])
    current = weighted_width(E0, np.zeros(E0.size))
    design = LaplaceDesign(forms)

    def width(variance: float) -> float:
        return current * math.sqrt(max(variance, 0.0) / design.variance_before)

    chosen, spent = [], 0.0
    remaining = list(candidates)
    width_now = current
    while remaining and (budget is None or len(chosen) < budget):
        affordable = [c for c in remaining if cost_budget is None or spent + c.cost <= cost_budget * (1 + 1e-9)]
        if not affordable:
            break
        scored = [((width_now - (after := width(design.expected_variance(c)))) / c.cost, -c.cost, after, c) for c in affordable]
        scored = [item for item in scored if width_now - item[2] >= MIN_GAIN * current]
        if not scored:
            break  # every affordable run is expected to tell (almost) nothing
        _, _, after, best = max(scored, key=lambda item: (item[0], item[1]))
        design.add(best)
        chosen.append({"model": best.model, "train_examples": best.train_examples, "pretrain_loss": best.pretrain_loss, "cost": best.cost, "n_eval": best.n_eval, "expected_width_after": after})
        spent += best.cost
        remaining.remove(best)
        width_now = after
    return {"runs": chosen, "current_width": current, "expected_width_after": width_now, "total_cost": spent, "draws": int(E0.size), "method": "expected Laplace posterior variance of E0 over the posterior draws, greedy per unit cost"}


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
