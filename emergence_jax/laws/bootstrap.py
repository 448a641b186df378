"""Bootstrap intervals over rows: the alternative to MCMC for the emergence-law parameters."""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.mle import fit_mle
from emergence_jax.laws.posterior import summarise
from emergence_jax.laws.sweep import Sweep


def bootstrap_fit(sweep: Sweep, spec: LawSpec, *, resamples: int = 200, seed: int = 0, starts_per_resample: int = 4, progress: bool = True) -> dict:
    """Refit by maximum likelihood on `resamples` resamplings of the rows (with replacement).

    Each refit starts from the full-data MLE plus a few random starts. Returns ``draws`` (name ->
    array over resamples) and ``summary`` (median, 5%/95% per parameter).
    """
    full = fit_mle(sweep, spec, seed=seed)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {name: [] for name in full.params}
    for index in tqdm(range(resamples), desc="bootstrap", disable=not progress):
        rows = rng.integers(0, sweep.n_rows, sweep.n_rows)
        refit = fit_mle(sweep.subset(rows), spec, n_starts=starts_per_resample, seed=seed + index + 1, starts=[full.params])
        for name, value in refit.params.items():
            draws[name].append(value)
    arrays = {name: np.array(values) for name, values in draws.items()}
    return {"mle": full.params, "draws": arrays, "summary": {name: summarise(values) for name, values in arrays.items()}}
