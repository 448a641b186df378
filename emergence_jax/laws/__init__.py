"""Emergence laws: functional forms, the one NumPyro likelihood (`laws.model`), maximum-likelihood
and NUTS fits, stacking over forms, posterior predictions, model checks, backtests, the model-free
truth (`laws.truth`) and loss-threshold analysis. Pure NumPy/JAX on CPU; never imports model code.

For other modules (experiment planning, the demo):

- ``pointwise_log_likelihood(fit, rows) -> ndarray [draws, rows]``: log p(row | posterior draw),
  nats, from the fitted NumPyro model via `numpyro.infer.log_likelihood`. `fit` is an
  `laws.fit.EmergenceFit` (the combined stacking-mixture draws, in the order of `fit.E0_draws()`)
  or a `laws.bayes.PosteriorFit` (one form). `rows` is a `laws.sweep.Sweep` or validated results
  rows (losses in the fit's unit); hypothetical outcomes are rows with the `accuracy` to score.
- ``model_free_truth(sweep_or_rows, *, sigmas=3.0)``: see `laws.truth`.
"""


def pointwise_log_likelihood(fit, rows):
    """log p(row | draw) [draws, rows] for `fit`'s posterior draws and `rows` (see the module docstring)."""
    from emergence_jax.laws.sweep import Sweep, sweep_from_records

    sweep = rows if isinstance(rows, Sweep) else sweep_from_records(list(rows))
    return fit.pointwise_log_likelihood(sweep)


def model_free_truth(sweep_or_rows, *, sigmas: float = 3.0, min_excess: float | None = None) -> dict:
    """The model-free emergence bracket (see `laws.truth.model_free_truth`)."""
    from emergence_jax.laws.truth import model_free_truth as truth

    return truth(sweep_or_rows, sigmas=sigmas, min_excess=min_excess)
