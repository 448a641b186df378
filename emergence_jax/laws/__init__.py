"""Emergence laws: functional forms, maximum-likelihood and NumPyro fits, posterior predictions,
backtests and loss-threshold analysis. Pure NumPy/JAX on CPU; never imports model code."""
