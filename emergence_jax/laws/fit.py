"""Fitting an emergence law end to end: choose the spec, compare performance forms on the data
(PSIS-LOO), sample the chosen form's posterior, and summarise the few-shot emergence loss."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.laws.bayes import PosteriorFit, fit_posterior
from emergence_jax.laws.functions import PERFORMANCE_FORMS, LawSpec, law_coefficients
from emergence_jax.laws.mle import fit_mle
from emergence_jax.laws.posterior import emergence_cdf, summarise
from emergence_jax.laws.sweep import Sweep


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings: chains (≥ 4 for trustworthy R-hat), warmup and kept draws per chain."""

    chains: int = 4
    warmup: int = 1000
    samples: int = 1000
    seed: int = 0
    progress: bool = True


def make_spec(sweep: Sweep, *, form: str, law: str = "log_power", D0: float | None = None, likelihood: str = "binomial", floor_shift: bool = False) -> LawSpec:
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
    """The chosen form's posterior, plus the PSIS-LOO comparison that chose it."""

    posterior: PosteriorFit
    comparison: dict[str, dict]

    @property
    def spec(self) -> LawSpec:
        return self.posterior.spec

    def E0_draws(self) -> np.ndarray:
        return self.posterior.flat("E0")

    def summary(self) -> dict:
        """The fields of fit.json that describe the law (everything but file paths)."""
        spec, mle = self.spec, self.posterior.mle
        params = {name: {"mle": mle.params[name], **summarise(self.posterior.flat(name))} for name in self.posterior.samples}
        E0 = summarise(self.E0_draws())
        width = max(E0["q95"] - E0["q05"], 1e-3)
        grid = np.linspace(E0["q05"] - width, E0["q95"] + width, 41)
        result = {
            "fewshot_emergence_loss": {"mle": mle.params["E0"], **E0},
            "fewshot_emergence_cdf": {"loss": grid.tolist(), "p_emerged": emergence_cdf(self.E0_draws(), grid).tolist()},
            "form": spec.form,
            "law": spec.law if "shift" in params else None,
            "likelihood": spec.likelihood,
            "D0": spec.D0,
            "D_ref": spec.D_ref,
            "spec": dataclasses.asdict(spec),
            "params": params,
            "diagnostics": self.posterior.diagnostics,
            "form_comparison": self.comparison,
            "mle_log_likelihood": mle.log_likelihood,
        }
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
    return {
        "elpd_loo": float(loo.elpd_loo),
        "se": float(loo.se),
        "p_loo": float(loo.p_loo),
        "pareto_k_max": float(np.max(loo.pareto_k)),
    }


def fit_emergence_law(
    sweep: Sweep,
    *,
    form: str = "auto",
    law: str = "log_power",
    D0: float | None = None,
    likelihood: str = "binomial",
    floor_shift: bool = False,
    sampler: SamplerSettings = SamplerSettings(),
) -> EmergenceFit:
    """Fit the law. With ``form="auto"`` every performance form is sampled and the one with the
    highest PSIS-LOO elpd is kept; its score and the others' are reported."""
    if sweep.n_rows < 3:
        raise UserError(f"need at least 3 rows to fit, got {sweep.n_rows}")
    forms = PERFORMANCE_FORMS if form == "auto" else (form,)
    fits, comparison = {}, {}
    for name in forms:
        spec = make_spec(sweep, form=name, law=law, D0=D0, likelihood=likelihood, floor_shift=floor_shift)
        mle = fit_mle(sweep, spec, seed=sampler.seed)
        fits[name] = fit_posterior(sweep, spec, chains=sampler.chains, warmup=sampler.warmup, samples=sampler.samples, seed=sampler.seed, progress=sampler.progress, mle=mle)
        comparison[name] = {**loo_score(fits[name]), "diagnostics": fits[name].diagnostics}
    chosen = max(comparison, key=lambda name: comparison[name]["elpd_loo"])
    for name, score in comparison.items():
        score["chosen"] = name == chosen
        score["elpd_diff"] = score["elpd_loo"] - comparison[chosen]["elpd_loo"]
    return EmergenceFit(posterior=fits[chosen], comparison=comparison)
