"""Task scaling law from PassUntil results (Hu et al. 2023): `PU(N) = exp(-c * N^(-alpha))`.

Per instance, `log(-log PU)` is linear in `x = log N` (N = parameters), or in `x = log L`
(L = pretraining loss, nats/token; then `alpha` comes out negative since PU grows as L falls):

    y = log(-log PU) = log c - alpha * x

Fitting. Every (model, instance) gives `s` passes in `n` samples. Whatever the stopping rule
(until `r` passes, or a cap), the likelihood is `p^s (1-p)^(n-s)`, so each instance is fitted by
maximum likelihood as a binomial GLM with the log-log link `y = log(-log p)`. This uses censored
instances (0 passes in K_max samples) correctly, where plugging `r / K` into a least-squares line
cannot. A weak normal penalty (sd `PRIOR_SD` on the standardised intercept and slope) keeps the fit
finite when an instance passed at fewer than two sizes; such instances are flagged `identified =
False` and their predictions lean on that penalty. Fits are vectorised damped Fisher scoring over
all instances at once (NumPy only).

Prediction. Each instance's fitted line gives PU at a new x; the task-level pass rate is the mean
over instances (the instance-level prediction of Hu et al. §4), with an interval from drawing each
instance's coefficients from their normal approximation.

Curvature. A shared quadratic term `q * z^2` (`z` = standardised x) is added to every instance's
line, intercepts and slopes staying free per instance; a likelihood-ratio test of `q = 0` (chi-square,
1 degree of freedom) with a profile-likelihood interval for `q` classifies the task:
`q < 0` significant: accelerated emergence (`y` falls faster and faster: PU rises faster than the
law predicts); `q > 0` significant: sub-scaling; otherwise: scaling. The sign is the same for
x = log N and x = log L (a sign flip of x does not change a second derivative).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, stats

from emergence_jax.errors import UserError
from emergence_jax.io import atomic_path, write_json

PRIOR_SD = 10.0
_ETA_CLIP = 30.0
X_COLUMNS = {"params": "parameters N", "pretrain_loss": "pretraining loss L (nats/token)"}


@dataclasses.dataclass(frozen=True)
class PassUntilData:
    """Passes `[instances, models]` in samples `[instances, models]` at `x_raw[models]` (N or L)."""

    task: str
    instance_ids: tuple[str, ...]
    models: tuple[str, ...]
    x_raw: np.ndarray
    passes: np.ndarray
    samples: np.ndarray
    x_name: str = "params"
    r: np.ndarray | None = None  # [models] passes each run stopped at (default 1)
    cap: np.ndarray | None = None  # [models] per-instance sample cap K_max (default: the most samples seen)

    @property
    def design(self) -> tuple[np.ndarray, np.ndarray]:
        """(r, cap) per model, for simulating the same sampling design."""
        r = np.ones(len(self.models), dtype=np.int64) if self.r is None else np.asarray(self.r)
        cap = self.samples.max(axis=0) if self.cap is None else np.asarray(self.cap)
        return r, cap

    @property
    def x(self) -> np.ndarray:
        return np.log(self.x_raw)


@dataclasses.dataclass(frozen=True)
class LawFit:
    """Per-instance fits `y = log_c - alpha * x` with the covariance of the standardised coefficients."""

    data: PassUntilData
    theta: np.ndarray  # [instances, 2]: intercept and slope in standardised z
    cov: np.ndarray  # [instances, 2, 2]
    x_center: float
    x_scale: float
    identified: np.ndarray  # [instances] bool

    @property
    def alpha(self) -> np.ndarray:
        return -self.theta[:, 1] / self.x_scale

    @property
    def log_c(self) -> np.ndarray:
        return self.theta[:, 0] - self.theta[:, 1] * self.x_center / self.x_scale

    def z(self, x_raw) -> np.ndarray:
        return (np.log(np.asarray(x_raw, dtype=float)) - self.x_center) / self.x_scale

    def predict_instances(self, x_raw: float, confidence: float = 0.9) -> dict[str, np.ndarray]:
        """Per-instance PU at `x_raw` (point and delta-method interval on the log-log scale)."""
        basis = np.array([1.0, float(self.z(x_raw))])
        eta = self.theta @ basis
        sd = np.sqrt(np.einsum("i,nij,j->n", basis, self.cov, basis))
        zq = stats.norm.ppf(0.5 + confidence / 2)
        return {"pu": _pu(eta), "lower": _pu(eta + zq * sd), "upper": _pu(eta - zq * sd)}

    def predict_task(self, x_raw: float, confidence: float = 0.9, draws: int = 2000, seed: int = 0) -> dict[str, float]:
        """Task-level pass rate (mean of instance PUs) at `x_raw`, with a normal interval.

        The standard error comes from drawing every instance's coefficients from their normal
        approximation. The interval is centred on the point estimate, not on the draws: the draws'
        mean sits below it by Jensen's inequality (PU is concave in log(-log PU) where PU > 1/e),
        and a percentile interval of the draws undercovers (measured: ~45% at nominal 90%).
        """
        basis = np.array([1.0, float(self.z(x_raw))])
        rng = np.random.default_rng(seed)
        chol = np.linalg.cholesky(self.cov + 1e-12 * np.eye(2))
        theta = self.theta[None] + np.einsum("nij,dnj->dni", chol, rng.standard_normal((draws, *self.theta.shape)))
        se = float(_pu(theta @ basis).mean(axis=1).std())
        point = float(_pu(self.theta @ basis).mean())
        half = float(stats.norm.ppf(0.5 + confidence / 2)) * se
        return {"x": float(x_raw), "pass_rate": point, "lower": max(0.0, point - half), "upper": min(1.0, point + half), "se": se}


@dataclasses.dataclass(frozen=True)
class CurvatureTest:
    """Test of a shared quadratic term `q * z^2` in `log(-log PU)` (z = standardised x).

    `q`, `q_lower`, `q_upper`: profile-likelihood estimate and asymptotic interval (descriptive).
    `statistic`: the studentised score for `q` at `q = 0`; `p_value`: two-sided, from a parametric
    bootstrap of that statistic under the fitted straight lines with the runs' own design (r, cap).
    """

    q: float
    q_lower: float
    q_upper: float
    statistic: float
    p_value: float
    confidence: float
    classification: str  # "accelerated emergence" | "sub-scaling" | "scaling"
    instances_used: int
    bootstrap_draws: int


def _pu(eta: np.ndarray) -> np.ndarray:
    return np.exp(-np.exp(np.clip(eta, -_ETA_CLIP, _ETA_CLIP)))


def _inverse_expm1(u: np.ndarray) -> np.ndarray:
    """1 / (exp(u) - 1) without overflow for large u."""
    return np.exp(-u) / -np.expm1(-u)


def _loglik_terms(eta, passes, samples):
    """Binomial log-likelihood of p = exp(-exp(eta)) for every cell."""
    u = np.exp(np.clip(eta, -_ETA_CLIP, _ETA_CLIP))
    failures = samples - passes
    log_fail = np.log(-np.expm1(-u))
    return -passes * u + np.where(failures > 0, failures * log_fail, 0.0)


def _fit_lines(z, passes, samples, offset, theta0=None, iterations: int = 100):
    """Penalised MLE of (intercept, slope) per instance for eta = a + b z + offset; vectorised.

    Returns (theta [I, 2], penalised log-likelihood [I], observed information [I, 2, 2]).
    """
    n_inst = passes.shape[0]
    design = np.stack([np.ones_like(z), z], axis=-1)  # [M, 2]
    theta = np.zeros((n_inst, 2)) if theta0 is None else theta0.copy()
    if theta0 is None:  # start from the empirical log-log of a shrunk rate per instance
        rate = (passes.sum(1) + 0.5) / (samples.sum(1) + 1.0)
        theta[:, 0] = np.log(-np.log(rate))
    penalty = np.eye(2) / PRIOR_SD**2

    def objective(th):
        eta = th @ design.T + offset
        return _loglik_terms(eta, passes, samples).sum(1) - 0.5 * (th**2).sum(1) / PRIOR_SD**2

    current = objective(theta)
    active = np.ones(n_inst, dtype=bool)
    for _ in range(iterations):
        eta = np.clip(theta @ design.T + offset, -_ETA_CLIP, _ETA_CLIP)
        u = np.exp(eta)
        inv_em1 = _inverse_expm1(u)
        score_eta = u * (-passes + (samples - passes) * inv_em1)
        weight = samples * u**2 * inv_em1  # Fisher information per cell on the eta scale
        grad = score_eta @ design - theta / PRIOR_SD**2
        info = np.einsum("im,mj,mk->ijk", weight, design, design) + penalty
        step = np.where(active[:, None], np.linalg.solve(info, grad[..., None])[..., 0], 0.0)
        active &= np.abs(step).max(axis=1) > 1e-8
        scale = np.ones(n_inst)
        before = current.copy()
        pending = active.copy()
        for _ in range(30):
            candidate = theta + scale[:, None] * step
            value = objective(candidate)
            ok = pending & (value >= current - 1e-12)
            theta[ok], current[ok] = candidate[ok], value[ok]
            pending &= ~ok
            if not pending.any():
                break
            scale = np.where(pending, scale / 2, scale)
        active &= ~pending & (current - before > 1e-10)  # no step improves: converged to working precision
        if not active.any():
            break
    eta = np.clip(theta @ design.T + offset, -_ETA_CLIP, _ETA_CLIP)
    u = np.exp(eta)
    weight = samples * u**2 * _inverse_expm1(u)
    info = np.einsum("im,mj,mk->ijk", weight, design, design) + penalty
    return theta, current, info


def fit_pass_until_law(data: PassUntilData) -> LawFit:
    """Per-instance maximum-likelihood fit of `log(-log PU) = log c - alpha * x`."""
    if len(data.models) < 2:
        raise UserError(f"task {data.task!r}: the PassUntil law needs results from at least 2 models, got {len(data.models)}")
    x = data.x
    center, scale = float(x.mean()), float(x.std()) or 1.0
    z = (x - center) / scale
    theta, _, info = _fit_lines(z, data.passes.astype(float), data.samples.astype(float), offset=0.0)
    passed = data.passes > 0
    not_always = data.passes < data.samples
    identified = (passed.sum(1) >= 2) & (not_always.sum(1) >= 1)
    return LawFit(data, theta, np.linalg.inv(info), center, scale, identified)


def simulate_pass_until(p: np.ndarray, r: np.ndarray, cap: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws of (passes, samples) from sampling until `r` passes or `cap` samples.

    `p`, `r`, `cap` broadcast together. Completed: K = r + NegativeBinomial(r, p) when K <= cap.
    Censored: passes ~ Binomial(cap, p) conditioned on being below r, drawn from its pmf.
    """
    p, r, cap = np.broadcast_arrays(np.asarray(p, float), np.asarray(r, np.int64), np.asarray(cap, np.int64))
    hopeless = p < 1e-12  # beyond any practical cap, and beyond numpy's negative-binomial sampler
    k = np.where(hopeless, cap + 1, r + rng.negative_binomial(r, np.where(hopeless, 1.0, np.clip(p, 0.0, 1.0))))
    censored = k > cap
    passes = np.where(censored, 0, r)
    if censored.any() and r.max() > 1:
        idx = np.nonzero(censored)
        counts = np.arange(r.max())[None, :]
        pmf = stats.binom.pmf(counts, cap[idx][:, None], p[idx][:, None]) * (counts < r[idx][:, None])
        cdf = np.cumsum(pmf / np.maximum(pmf.sum(axis=1, keepdims=True), 1e-300), axis=1)
        passes[idx] = np.minimum((rng.random(len(cdf))[:, None] > cdf).sum(axis=1), r[idx] - 1)
    return passes, np.where(censored, cap, k)


def _curvature_scores(z, passes, samples, theta):
    """Studentised score for q at q = 0, per instance group: (score [I], efficient information [I])."""
    eta = np.clip(theta @ np.stack([np.ones_like(z), z]), -_ETA_CLIP, _ETA_CLIP)
    u = np.exp(eta)
    inv_em1 = _inverse_expm1(u)
    score_eta = u * (-passes + (samples - passes) * inv_em1)
    weight = samples * u**2 * inv_em1
    design = np.stack([np.ones_like(z), z, z**2], axis=-1)
    info = np.einsum("im,mj,mk->ijk", weight, design, design)
    nuisance = info[:, :2, :2] + np.eye(2) / PRIOR_SD**2
    cross = info[:, :2, 2]
    efficient = info[:, 2, 2] - np.einsum("ij,ij->i", cross, np.linalg.solve(nuisance, cross[..., None])[..., 0])
    return score_eta @ z**2, efficient


def assess_curvature(data: PassUntilData, confidence: float = 0.9, draws: int = 200, seed: int = 0) -> CurvatureTest:
    """Is `log(-log PU)` curved in `x`, the same way across instances? See the module docstring.

    A likelihood-ratio or Wald test with chi-square calibration rejects a true straight line too
    often when each point rests on a few passes (measured 25-32% at nominal 10% with r = 2; each
    instance has its own intercept and slope, a Neyman-Scott setting), so the score statistic is
    calibrated by `draws` parametric-bootstrap replicates of the whole PassUntil design instead.
    """
    if len(data.models) < 3:
        raise UserError(f"task {data.task!r}: a curvature test needs at least 3 model sizes, got {len(data.models)}")
    fit = fit_pass_until_law(data)
    keep = fit.identified
    if not keep.any():
        raise UserError(f"task {data.task!r}: no instance passed at two or more model sizes; sample more (--max-samples) before testing curvature")
    z = (data.x - fit.x_center) / fit.x_scale
    passes, samples = data.passes[keep].astype(float), data.samples[keep].astype(float)
    null_theta = fit.theta[keep]
    score, info = _curvature_scores(z, passes, samples, null_theta)
    statistic = float(score.sum() / np.sqrt(info.sum()))

    rng = np.random.default_rng(seed)
    r, cap = data.design
    p_null = _pu(null_theta @ np.stack([np.ones_like(z), z]))
    sim_passes, sim_samples = simulate_pass_until(np.broadcast_to(p_null, (draws, *p_null.shape)), r, cap, rng)
    sim_passes = sim_passes.reshape(-1, len(z)).astype(float)
    sim_samples = sim_samples.reshape(-1, len(z)).astype(float)
    sim_theta, _, _ = _fit_lines(z, sim_passes, sim_samples, offset=0.0, theta0=np.tile(null_theta, (draws, 1)))
    sim_score, sim_info = _curvature_scores(z, sim_passes, sim_samples, sim_theta)
    sim_stat = sim_score.reshape(draws, -1).sum(1) / np.sqrt(sim_info.reshape(draws, -1).sum(1))
    upper_tail = (1 + np.sum(sim_stat >= statistic)) / (draws + 1)
    lower_tail = (1 + np.sum(sim_stat <= statistic)) / (draws + 1)
    p_value = float(min(1.0, 2 * min(upper_tail, lower_tail)))

    def profile(q: float) -> float:
        _, loglik, _ = _fit_lines(z, passes, samples, offset=q * z**2, theta0=null_theta)
        return float(loglik.sum())

    null = profile(0.0)
    best = optimize.minimize_scalar(lambda q: -profile(q), bounds=(-5.0, 5.0), method="bounded", options={"xatol": 1e-5})
    q_hat, top = float(best.x), max(-float(best.fun), null)
    cut = stats.chi2.ppf(confidence, df=1) / 2.0

    def bound(direction: float) -> float:
        edge = q_hat + direction * 5.0
        gap = lambda q: top - profile(q) - cut  # noqa: E731
        return float(optimize.brentq(gap, q_hat, edge, xtol=1e-5)) if gap(edge) > 0 else math.copysign(math.inf, direction)

    if p_value < 1 - confidence:
        label = "accelerated emergence" if statistic < 0 else "sub-scaling"
    else:
        label = "scaling"
    return CurvatureTest(q_hat, bound(-1.0), bound(1.0), statistic, p_value, confidence, label, int(keep.sum()), draws)


def load_pass_until_results(paths: Sequence[str | os.PathLike], x_name: str = "params") -> list[PassUntilData]:
    """Group PassUntil result files by task; instances are matched by id across models."""
    from emergence_jax.evaluate.pass_until import read_state

    if x_name not in X_COLUMNS:
        raise UserError(f"--x must be one of {sorted(X_COLUMNS)}, got {x_name!r}")
    by_task: dict[str, list[tuple[Path, dict]]] = {}
    for path in map(Path, paths):
        state = read_state(path)
        meta = state.get("metadata", {})
        value = meta.get(x_name)
        if not isinstance(value, (int, float)) or not value > 0:
            raise UserError(f"{path}: metadata field {x_name!r} must be a positive number ({X_COLUMNS[x_name]}); rerun pass-until with it or choose --x")
        by_task.setdefault(str(meta.get("task", "task")), []).append((path, state))
    datasets = []
    for task, entries in sorted(by_task.items()):
        entries.sort(key=lambda e: e[1]["metadata"][x_name])
        ids = [i["id"] for i in entries[0][1]["instances"]]
        for path, state in entries[1:]:
            if sorted(i["id"] for i in state["instances"]) != sorted(ids):
                raise UserError(f"{path}: instance ids differ from {entries[0][0]} for task {task!r}; run every model on the same instances")
        passes = np.zeros((len(ids), len(entries)), dtype=np.int64)
        samples = np.zeros_like(passes)
        for m, (_, state) in enumerate(entries):
            rows = {i["id"]: i for i in state["instances"]}
            passes[:, m] = [rows[i]["passes"] for i in ids]
            samples[:, m] = [rows[i]["samples"] for i in ids]
        if (samples == 0).any():
            bad = entries[int(np.nonzero((samples == 0).any(0))[0][0])][0]
            raise UserError(f"{bad}: some instances have no samples; resume that pass-until run first")
        models = tuple(str(s["metadata"].get("model", p.stem)) for p, s in entries)
        x_raw = np.array([float(s["metadata"][x_name]) for _, s in entries])
        r = np.array([int(s["settings"]["r"]) for _, s in entries])
        cap = np.array([int(s["settings"]["max_samples"]) for _, s in entries])
        datasets.append(PassUntilData(task, tuple(ids), models, x_raw, passes, samples, x_name, r, cap))
    return datasets


def plot_pass_until_law(fit: LawFit, path: str | os.PathLike, *, predict_at: Sequence[float] = (), curvature: CurvatureTest | None = None, max_instances: int = 12) -> None:
    """Left: per-instance log(-log PU) against log x with fitted lines (censored points as
    triangles at their one-sided bound). Right: task-level mean PU, observed and predicted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = fit.data
    xs = np.concatenate([data.x_raw, np.asarray(predict_at, dtype=float)])
    grid = np.exp(np.linspace(np.log(xs.min()), np.log(xs.max()), 100))
    zg = fit.z(grid)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.cm.viridis(np.linspace(0, 0.9, min(max_instances, len(data.instance_ids))))
    alpha_conf = 0.1
    for i, color in zip(range(min(max_instances, len(data.instance_ids))), colors):
        s, n = data.passes[i], data.samples[i]
        mle = np.where(s > 0, s / np.maximum(n, 1), np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            left.plot(data.x_raw, np.log(-np.log(mle)), "o", color=color, ms=4)
            bound = np.array([stats.beta.ppf(1 - alpha_conf, k + 1, m - k) if k < m else 1.0 for k, m in zip(s, n)])
            censored = s == 0
            left.plot(data.x_raw[censored], np.log(-np.log(bound[censored])), "^", color=color, ms=5, mfc="none")
        left.plot(grid, fit.theta[i, 0] + fit.theta[i, 1] * zg, "-", color=color, lw=1, alpha=0.8)
    left.set_xscale("log")
    left.set_xlabel(X_COLUMNS[data.x_name])
    left.set_ylabel("log(−log PassUntil)")
    left.set_title(f"{data.task}: instances (▲ = 0 passes, lower bound on y)")

    with np.errstate(divide="ignore"):
        observed = (data.passes / data.samples).mean(0)
        right.plot(data.x_raw, observed, "ko", label="observed mean PU (MLE)")
        predicted = np.array([fit.predict_task(g, draws=200)["pass_rate"] for g in grid])
        right.plot(grid, predicted, "C0-", label="mean of instance fits")
        for target in predict_at:
            pred = fit.predict_task(target)
            right.errorbar([target], [pred["pass_rate"]], yerr=[[pred["pass_rate"] - pred["lower"]], [pred["upper"] - pred["pass_rate"]]], fmt="C3s", capsize=3, label=f"prediction at {target:.3g}")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(X_COLUMNS[data.x_name])
    right.set_ylabel("task pass rate (mean PU)")
    title = "task level"
    if curvature is not None:
        title += f": {curvature.classification} (q={curvature.q:.3g}, p={curvature.p_value:.2g})"
    right.set_title(title)
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=120)
    plt.close(fig)


def fit_summary(fit: LawFit, curvature: CurvatureTest | None, predict_at: Sequence[float], confidence: float) -> dict[str, Any]:
    """JSON-ready summary: per-instance (log c, alpha), task predictions and the curvature test."""
    data = fit.data
    sd_alpha = np.sqrt(fit.cov[:, 1, 1]) / fit.x_scale
    instances = [
        {"id": iid, "log_c": float(fit.log_c[i]), "alpha": float(fit.alpha[i]), "alpha_se": float(sd_alpha[i]), "identified": bool(fit.identified[i])}
        for i, iid in enumerate(data.instance_ids)
    ]
    return {
        "task": data.task,
        "x": data.x_name,
        "models": list(data.models),
        "x_values": data.x_raw.tolist(),
        "observed_pass_rate": (data.passes / data.samples).mean(0).tolist(),
        "fitted_pass_rate": [fit.predict_task(v, confidence)["pass_rate"] for v in data.x_raw],
        "instances_identified": int(fit.identified.sum()),
        "instances": instances,
        "predictions": [fit.predict_task(v, confidence) for v in predict_at],
        "curvature": None if curvature is None else dataclasses.asdict(curvature),
        "confidence": confidence,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", nargs="+", required=True, metavar="FILE", help="PassUntil result files (one per model; written by `emergence-jax pass-until`)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for pass_until_fit.json and one plot per task")
    parser.add_argument("--x", default="params", choices=sorted(X_COLUMNS), help="scale variable from each file's metadata (default: params)")
    parser.add_argument("--predict", type=float, nargs="*", default=None, metavar="X", help="x values to predict the task pass rate at (default for params: 4x and 10x the largest)")
    parser.add_argument("--confidence", type=float, default=0.9, help="level of intervals and of the curvature test (default 0.9)")


def run(args: argparse.Namespace) -> int:
    if not 0 < args.confidence < 1:
        raise UserError(f"--confidence must lie in (0, 1), got {args.confidence}")
    out = Path(args.out)
    summaries = []
    for data in load_pass_until_results(args.results, args.x):
        fit = fit_pass_until_law(data)
        if args.predict is not None:
            predict_at = list(args.predict)
        else:
            predict_at = [4 * data.x_raw.max(), 10 * data.x_raw.max()] if args.x == "params" else []
        curvature = assess_curvature(data, args.confidence) if len(data.models) >= 3 and fit.identified.any() else None
        summary = fit_summary(fit, curvature, predict_at, args.confidence)
        plot_name = f"pass_until_{_slug(data.task)}.png"
        plot_pass_until_law(fit, out / plot_name, predict_at=predict_at, curvature=curvature)
        summary["plot"] = plot_name
        summaries.append(summary)
        line = f"{data.task}: {len(data.instance_ids)} instances ({summary['instances_identified']} identified), {len(data.models)} models"
        if curvature is not None:
            line += f"; {curvature.classification} (q={curvature.q:.3g} [{curvature.q_lower:.3g}, {curvature.q_upper:.3g}], p={curvature.p_value:.3g})"
        for pred in summary["predictions"]:
            line += f"; pass rate at {pred['x']:.3g}: {pred['pass_rate']:.3g} [{pred['lower']:.3g}, {pred['upper']:.3g}]"
        print(line)
    write_json(out / "pass_until_fit.json", {"tasks": summaries}, indent=1)
    print(f"wrote {out / 'pass_until_fit.json'}")
    return 0


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text) or "task"
