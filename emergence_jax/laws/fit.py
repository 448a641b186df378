"""Fitting an emergence law end to end: sample every performance form's posterior, weight the
forms by stacking their PSIS-LOO predictive densities (ArviZ `compare`), and report the few-shot
emergence loss as the weighted mixture of the forms' posterior draws, or say plainly that nothing
has emerged in the data.

Loss units: the fit is scale-free (see `laws.model`); every loss it reports is in the input's unit,
named by `loss_unit` (``nats`` by default, or ``bits``; `LOSS_UNITS` gives the factor to nats).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
import warnings

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.laws.bayes import DIVERGENCE_WARN, RETRY_TARGET_ACCEPT, TARGET_ACCEPT, NUTSSampler, PosteriorFit, warn_if_diagnostics_bad
from emergence_jax.laws.functions import PERFORMANCE_FORMS, LawSpec, law_coefficients
from emergence_jax.laws.mle import fit_mle
from emergence_jax.laws.model import Frame
from emergence_jax.laws.posterior import emergence_cdf, summarise
from emergence_jax.laws.sweep import Sweep

# Loss units a user can name, and their size in nats.
LOSS_UNITS = {"nats": 1.0, "bits": math.log(2.0)}
DEFAULT_LIKELIHOOD = "beta_binomial"
# Stacking weight from which a form's divergences matter (it is sampled again above DIVERGENCE_WARN).
RETRY_MIN_WEIGHT = 0.01


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings: chains (≥ 4 for trustworthy R-hat), warmup and kept draws per chain;
    `progress` prints one line per form to stderr as it finishes."""

    chains: int = 4
    warmup: int = 1000
    samples: int = 1000
    seed: int = 0
    progress: bool = True


def make_spec(sweep: Sweep, *, form: str, law: str = "log_power", D0: float | None = None, likelihood: str = DEFAULT_LIKELIHOOD, floor_shift: bool = False) -> LawSpec:
    """The spec for this sweep. D0 defaults to the number of in-context examples at evaluation
    (which must then be the same for every row); D_ref is the largest finetuning amount."""
    if D0 is None:
        shots = np.unique(sweep.shots)
        if shots.size != 1:
            raise UserError(f"rows were evaluated with different shot counts ({', '.join(str(int(s)) for s in shots)}); set --D0")
        D0 = max(float(shots[0]), 1.0)
    if D0 < 1:
        raise UserError(f"--D0 must be at least 1 example, got {D0}")
    finetuned = sweep.train_examples[sweep.train_examples > 0]
    D_ref = float(finetuned.max()) if finetuned.size else 10.0 * D0
    if D_ref <= D0:
        raise UserError(f"the largest finetuning amount ({D_ref:g} examples) must exceed D0 ({D0:g}); lower --D0")
    return LawSpec(form=form, law=law, D0=D0, D_ref=D_ref, likelihood=likelihood, floor_shift=floor_shift)


@dataclasses.dataclass
class EmergenceFit:
    """Every form's posterior (`fits`), their stacking weights, and the combined E0 draws.

    `posterior` is the form with the largest weight (its joint draws drive plots and predictive
    curves). `mixture` holds, for each combined draw, (form index into `forms`, draw index into that
    form's pooled draws); `E0_draws()` and `pointwise_log_likelihood` follow it.
    """

    fits: dict[str, PosteriorFit]
    comparison: dict[str, dict]
    weights: dict[str, float]
    mixture: np.ndarray
    status: dict
    loss_unit: str = "nats"
    checks: dict | None = None
    check_rows: dict | None = None

    @property
    def forms(self) -> tuple[str, ...]:
        return tuple(self.fits)

    @property
    def posterior(self) -> PosteriorFit:
        return self.fits[max(self.weights, key=self.weights.get)]

    @property
    def spec(self) -> LawSpec:
        return self.posterior.spec

    @property
    def frame(self) -> Frame:
        return self.posterior.frame

    def E0_draws(self) -> np.ndarray:
        """Combined few-shot emergence-loss draws (input loss unit): the stacking-weighted mixture."""
        flats = [self.fits[form].flat("E0") for form in self.forms]
        return np.array([flats[f][i] for f, i in self.mixture])

    def pointwise_log_likelihood(self, sweep: Sweep) -> np.ndarray:
        """log p(row | draw) [draws, rows] for the combined draws (each from its own form's model)."""
        out = np.empty((self.mixture.shape[0], sweep.n_rows))
        for f, form in enumerate(self.forms):
            rows = self.mixture[:, 0] == f
            if rows.any():
                out[rows] = self.fits[form].pointwise_log_likelihood(sweep)[self.mixture[rows, 1]]
        return out

    def summary(self) -> dict:
        """The fields of fit.json that describe the law (everything but file paths)."""
        spec, mle = self.spec, self.posterior.mle
        params = {name: {"mle": mle.params[name], **summarise(self.posterior.flat(name))} for name in self.posterior.samples}
        draws = self.E0_draws()
        E0 = summarise(draws)
        per_form = {form: {"weight": self.weights[form], **summarise(fit.flat("E0")), "mle": fit.mle.params["E0"]} for form, fit in self.fits.items()}
        if self.status["status"] == "beyond_data":
            fewshot = {
                "status": "beyond_data",
                "upper_bound": self.status["upper_bound"],
                "unit": self.loss_unit,
                "statement": f"not emerged in the data; emergence needs loss below {self.status['upper_bound']:.4f} {self.loss_unit}",
                "posterior": E0,
                "rule": self.status["rule"],
            }
        else:
            fewshot = {"status": "located", "unit": self.loss_unit, "mle": mle.params["E0"], **E0, "by_form": per_form}
        width = max(E0["q95"] - E0["q05"], 1e-3 * self.frame.scale)
        grid = np.linspace(E0["q05"] - width, E0["q95"] + width, 41)
        result = {
            "loss_unit": self.loss_unit,
            "loss_unit_in_nats": LOSS_UNITS.get(self.loss_unit),
            "fewshot_emergence_loss": fewshot,
            "fewshot_emergence_cdf": {"loss": grid.tolist(), "p_emerged": emergence_cdf(draws, grid).tolist()},
            "form": spec.form,
            "form_weights": dict(self.weights),
            "form_combination": "stacking of PSIS-LOO predictive densities (arviz.compare, method='stacking'); E0 = weighted mixture of the forms' draws",
            "law": spec.law if "shift" in params else None,
            "likelihood": spec.likelihood,
            "D0": spec.D0,
            "D_ref": spec.D_ref,
            "spec": dataclasses.asdict(spec),
            "frame": dataclasses.asdict(self.frame),
            "params": params,
            "diagnostics": self.posterior.diagnostics,
            "form_comparison": self.comparison,
            "mle_log_likelihood": mle.log_likelihood,
            "mle_E0_profile": mle.profile,
            "emergence_test": self.status,
        }
        if self.checks is not None:
            result["model_checks"] = self.checks
        if "shift" in params:
            coefficients = law_coefficients(mle.params["E0"], mle.params["shift"], mle.params["alpha"], spec)
            result["law_coefficients_mle"] = {k: float(v) for k, v in coefficients.items()}
        return result


def loo_score(posterior: PosteriorFit) -> dict:
    """PSIS-LOO expected log predictive density (higher is better) with its standard error."""
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loo = az.loo(posterior.idata, pointwise=True)
    return {"elpd_loo": float(loo.elpd_loo), "se": float(loo.se), "p_loo": float(loo.p_loo), "pareto_k_max": float(np.max(loo.pareto_k))}


def stacking_weights(fits: dict[str, PosteriorFit]) -> tuple[dict[str, float], dict[str, dict]]:
    """Stacking weights of the forms (ArviZ `compare`, PSIS-LOO) and each form's scores. A NaN
    elpd is an error naming the form (its pointwise log-likelihood is broken)."""
    import arviz as az

    comparison = {}
    for form, fit in fits.items():
        comparison[form] = {**loo_score(fit), "diagnostics": fit.diagnostics}
        # a single form needs no LOO weight: its elpd may be NaN from PSIS alone (arviz's Pareto fit
        # fails on a row whose log-likelihood takes a few tied values, relu draws at chance), which is no error
        if not np.isfinite(comparison[form]["elpd_loo"]) and (len(fits) > 1 or not np.isfinite(fit.idata.log_likelihood["obs"].values).all()):
            raise UserError(f"the {form} form's PSIS-LOO elpd is not finite; its pointwise log-likelihood has NaN or infinite values (check the rows' accuracy, n_eval and chance), or fit with --form set to another form")
    if len(fits) == 1:
        form = next(iter(fits))
        comparison[form].update(weight=1.0, elpd_diff=0.0, dse=0.0)
        return {form: 1.0}, comparison
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare({form: fit.idata for form, fit in fits.items()}, ic="loo", method="stacking")
    weights = {form: float(table.loc[form, "weight"]) for form in fits}
    for form in fits:
        comparison[form].update(weight=weights[form], elpd_diff=-float(table.loc[form, "elpd_diff"]), dse=float(table.loc[form, "dse"]))
    return weights, comparison


def mixture_index(fits: dict[str, PosteriorFit], weights: dict[str, float], *, seed: int = 0) -> np.ndarray:
    """(form index, draw index) for each combined draw: as many draws as one form has, each form
    contributing round(weight·N) of its own draws (evenly thinned, so chains stay mixed)."""
    forms = list(fits)
    n = fits[forms[0]].flat("E0").size
    counts = np.floor(np.array([weights[f] for f in forms]) * n).astype(int)
    counts[int(np.argmax(counts))] += n - counts.sum()
    rng = np.random.default_rng(seed)
    parts = [np.stack([np.full(c, f), np.sort(rng.choice(n, c, replace=False))], axis=1) for f, c in enumerate(counts) if c > 0]
    return np.concatenate(parts, axis=0)


def fit_emergence_law(
    sweep: Sweep,
    *,
    form: str = "auto",
    law: str = "log_power",
    D0: float | None = None,
    likelihood: str = DEFAULT_LIKELIHOOD,
    floor_shift: bool = False,
    sampler: SamplerSettings = SamplerSettings(),
    loss_unit: str = "nats",
    checks: bool = True,
) -> EmergenceFit:
    """Fit the law. With ``form="auto"`` every performance form is sampled and the forms are
    combined by stacking weights; every form's E0 and weight are reported. A form with weight ≥
    RETRY_MIN_WEIGHT and more than DIVERGENCE_WARN divergent transitions is sampled again at target
    acceptance RETRY_TARGET_ACCEPT, once (its diagnostics keep the first attempt's); the weights are
    recomputed after each round, so a form that gains weight is checked too. `checks` adds
    posterior predictive checks, prior–posterior overlap and D0 sensitivity (`laws.checks`)."""
    from emergence_jax.laws.truth import emergence_status

    if sweep.n_rows < 3:
        raise UserError(f"need at least 3 rows to fit, got {sweep.n_rows}")
    if loss_unit not in LOSS_UNITS:
        raise UserError(f"--loss-unit must be one of {', '.join(LOSS_UNITS)}, got {loss_unit!r}")
    frame = Frame.from_losses(sweep.loss)
    forms = PERFORMANCE_FORMS if form == "auto" else (form,)
    started = time.perf_counter()

    def launch(spec: LawSpec, mle, target_accept: float = TARGET_ACCEPT):
        nuts = NUTSSampler(spec, finetuned=sweep.finetuned, chains=sampler.chains, warmup=sampler.warmup, samples=sampler.samples, target_accept=target_accept)
        return nuts.launch(sweep, seed=sampler.seed, mle=mle, frame=frame, warn=False)

    def finish(name: str, pending) -> PosteriorFit:
        fit = pending()
        if sampler.progress:
            d = fit.diagnostics
            print(f"  {name} form: NUTS {sampler.chains} chains x {sampler.samples} draws done {time.perf_counter() - started:.1f} s into the fit "
                  f"(R-hat {d['r_hat_max']:.3f}, {d['divergences']} divergences, {d['mean_leapfrog_steps']:.0f} leapfrog steps per draw, target acceptance {d['target_accept']})", file=sys.stderr, flush=True)
        return fit

    pending = {}
    for name in forms:  # every form's sampler is launched before any is awaited: they run side by side
        spec = make_spec(sweep, form=name, law=law, D0=D0, likelihood=likelihood, floor_shift=floor_shift)
        pending[name] = launch(spec, fit_mle(sweep, spec, seed=sampler.seed, frame=frame))
    fits = {name: finish(name, pending[name]) for name in forms}
    weights, comparison = stacking_weights(fits)
    # forms that carry weight but diverged too often are sampled again with smaller steps; the weights
    # are recomputed after, so a form that gains weight then is checked in the next round
    retried: set[str] = set()
    while retry := [name for name in forms if name not in retried and weights[name] >= RETRY_MIN_WEIGHT and fits[name].diagnostics["divergence_fraction"] > DIVERGENCE_WARN]:
        retried.update(retry)
        if sampler.progress:
            print(f"  sampling {', '.join(retry)} again at target acceptance {RETRY_TARGET_ACCEPT} (more than {DIVERGENCE_WARN:.1%} divergent transitions)", file=sys.stderr, flush=True)
        pending = {name: launch(fits[name].spec, fits[name].mle, RETRY_TARGET_ACCEPT) for name in retry}
        for name in retry:
            first = fits[name].diagnostics
            fits[name] = finish(name, pending[name])
            fits[name].diagnostics["first_attempt"] = {key: first[key] for key in ("target_accept", "divergences", "divergence_fraction", "r_hat_max", "mean_leapfrog_steps")}
        weights, comparison = stacking_weights(fits)
    for name in forms:
        warn_if_diagnostics_bad(fits[name])
    top = max(weights, key=weights.get)
    for name in comparison:
        comparison[name]["chosen"] = name == top
    fit = EmergenceFit(fits=fits, comparison=comparison, weights=weights, mixture=mixture_index(fits, weights, seed=sampler.seed), status=emergence_status(sweep), loss_unit=loss_unit)
    if checks:
        from emergence_jax.laws.checks import model_checks

        fit.checks = model_checks(fit, sweep, seed=sampler.seed)
    return fit


def write_posterior(fit: EmergenceFit, path) -> None:
    """posterior.nc: the largest-weight form's InferenceData (joint draws E0, amplitude, ...: the
    names of fit.json's ``params``), plus ``E0_combined`` [chain, draw], the stacking mixture of all
    forms' E0 draws that fit.json's few-shot emergence loss summarises (input loss unit)."""
    import xarray as xr

    idata = fit.posterior.idata.copy()
    chains, draws = fit.posterior.samples["E0"].shape
    combined = fit.E0_draws()
    combined = np.resize(combined, chains * draws).reshape(chains, draws)
    idata.posterior["E0_combined"] = xr.DataArray(combined, dims=("chain", "draw"), coords={"chain": idata.posterior.chain, "draw": idata.posterior.draw})
    idata.posterior.attrs["loss_unit"] = fit.loss_unit
    idata.to_netcdf(str(path))
