"""The emergence-law functions, written once for NumPy and JAX (pass `xp=numpy` or `xp=jax.numpy`).

Performance against pretraining loss L (nats/token), with chance B and emergence loss E:

- ``relu``      B + A·max(0, E − L)                                  (Snell et al. 2024, paper form)
- ``softplus``  B + A·τ·softplus((E − L)/τ)                          (smooth elbow, temperature τ)
- ``jump``      B + J·σ((E − L)/w) + A·max(0, E − L),  J ≥ 0          (a step of width w, then a ramp)

all clipped to [0, 1]. Emergence law for the emergence loss as a function of finetuning examples D:

- ``log_power``  E(D) = k·(log D)^α + C     (default)
- ``power``      E(D) = k·D^α + C

Parameterisation used by every fit. Instead of (k, C) we sample the quantities a user reasons
about: ``E0 = E(D0)``, the few-shot emergence loss (the prediction), and ``shift = E(D_ref) − E(D0)``,
how far finetuning on D_ref examples moves the elbow (nats, ≥ 0). With g(D) = (log D)^α (or D^α):

    k = shift / (g(D_ref) − g(D0)),    C = E0 − k·g(D0),    E(D) = E0 + shift·(g(D) − g(D0)) / (g(D_ref) − g(D0))

This is the same family, but its parameters are nearly uncorrelated, which makes the likelihood
well-conditioned for both multi-start optimisation and NUTS.

Few-shot rows (D = 0) use E(D0). With the optional few-shot floor shift Δ, their floor is B + Δ
instead of B: few-shot prompting can sit slightly off chance (e.g. a bias toward one letter) while
the finetuned model's floor is chance.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType

import numpy as np

PERFORMANCE_FORMS = ("relu", "softplus", "jump")
EMERGENCE_LAWS = ("log_power", "power")
LIKELIHOODS = ("binomial", "beta_binomial")


@dataclasses.dataclass(frozen=True)
class LawSpec:
    """Which functional forms a fit uses, and its fixed constants.

    form: performance-vs-loss form (``relu``, ``softplus``, ``jump``).
    law: emergence law E(D) (``log_power`` or ``power``); unused when no row is finetuned.
    D0: few-shot extrapolation point in examples (≥ 1); defaults to the number of shots.
    D_ref: the reference data amount at which ``shift`` is measured (examples, > D0).
    floor_shift: fit Δ, the few-shot floor shift.
    temperature: τ of ``softplus`` (loss units) where it is not fitted (simulations); fits sample it.
    jump_width: w of ``jump`` (loss units) where it is not fitted (simulations); fits sample it.
    likelihood: ``binomial`` on correct counts, or ``beta_binomial`` with a fitted concentration
        (over-dispersion: checkpoint-to-checkpoint noise beyond sampling noise).
    """

    form: str = "relu"
    law: str = "log_power"
    D0: float = 5.0
    D_ref: float = 1000.0
    floor_shift: bool = False
    temperature: float = 0.02
    jump_width: float = 0.004
    likelihood: str = "binomial"

    def __post_init__(self):
        if self.form not in PERFORMANCE_FORMS:
            raise ValueError(f"form must be one of {PERFORMANCE_FORMS}, got {self.form!r}")
        if self.law not in EMERGENCE_LAWS:
            raise ValueError(f"law must be one of {EMERGENCE_LAWS}, got {self.law!r}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if not 1.0 <= self.D0 < self.D_ref:
            raise ValueError(f"need 1 <= D0 < D_ref, got D0={self.D0}, D_ref={self.D_ref}")


def law_basis(D, alpha, law: str, xp: ModuleType = np):
    """g(D): (log D)^α for ``log_power``, D^α for ``power``. D in examples (≥ 1)."""
    if law == "log_power":
        return xp.log(D) ** alpha
    return D**alpha


def emergence_loss(D, E0, shift, alpha, spec: LawSpec, xp: ModuleType = np):
    """E(D) in nats/token; D = 0 (few-shot) maps to D0."""
    D_eff = xp.where(D > 0, D, spec.D0)
    g = law_basis(D_eff, alpha, spec.law, xp)
    g0 = law_basis(spec.D0, alpha, spec.law, xp)
    g_ref = law_basis(spec.D_ref, alpha, spec.law, xp)
    return E0 + shift * (g - g0) / (g_ref - g0)


def law_coefficients(E0, shift, alpha, spec: LawSpec) -> dict:
    """(k, α, C) of E(D) = k·g(D) + C, the paper's parameters, from the fit's parameterisation."""
    g0 = law_basis(spec.D0, alpha, spec.law)
    k = shift / (law_basis(spec.D_ref, alpha, spec.law) - g0)
    return {"k": k, "alpha": alpha, "C": E0 - k * g0}


def performance(loss, E, chance, amplitude, spec: LawSpec, jump=0.0, xp: ModuleType = np, *, temperature=None, jump_width=None):
    """Expected accuracy in [0, 1] of a model at pretraining loss `loss` whose emergence loss is `E`.
    `temperature` / `jump_width` (loss units) override the spec's fixed values when fitted."""
    gap = E - loss
    if spec.form == "relu":
        rise = amplitude * xp.maximum(gap, 0.0)
    elif spec.form == "softplus":
        tau = spec.temperature if temperature is None else temperature
        rise = amplitude * tau * xp.logaddexp(0.0, gap / tau)
    else:
        width = spec.jump_width if jump_width is None else jump_width
        step = 0.5 * (1.0 + xp.tanh(gap / (2.0 * width)))  # logistic σ, overflow-free
        rise = jump * step + amplitude * xp.maximum(gap, 0.0)
    return xp.clip(chance + rise, 0.0, 1.0)


def predicted_accuracy(params: dict, loss, train_examples, chance, spec: LawSpec, xp: ModuleType = np):
    """Expected accuracy for rows (loss nats/token, D examples, chance) under one parameter set.

    `params` holds ``E0``, ``shift``, ``alpha``, ``amplitude`` and, as the spec needs, ``jump``,
    ``jump_width``, ``temperature`` and ``floor_shift`` (the spec's fixed width and temperature are
    used where absent). The function is scale-equivariant: losses and the loss-unit parameters may
    be in any unit, or standardised, as long as they share it.
    """
    params = with_defaults(params)
    E = emergence_loss(train_examples, params["E0"], params["shift"], params["alpha"], spec, xp)
    floor = chance + xp.where(train_examples == 0, params["floor_shift"], 0.0)
    return performance(loss, E, floor, params["amplitude"], spec, params["jump"], xp, temperature=params.get("temperature"), jump_width=params.get("jump_width"))


def parameter_names(spec: LawSpec, finetuned: bool) -> tuple[str, ...]:
    """The free parameters of a fit, in a fixed order. Without finetuned rows there is no law:
    only E0 (the few-shot emergence loss) and the form's own parameters are fitted."""
    names = ["E0"]
    if finetuned:
        names += ["shift", "alpha"]
    names.append("amplitude")
    if spec.form == "jump":
        names += ["jump", "jump_width"]
    if spec.form == "softplus":
        names.append("temperature")
    if spec.floor_shift:
        names.append("floor_shift")
    if spec.likelihood == "beta_binomial":
        names.append("concentration")
    return tuple(names)


# Values of parameters a fit leaves out (no finetuned rows, no jump, no floor shift).
FIXED_DEFAULTS = {"shift": 0.0, "alpha": 1.0, "jump": 0.0, "floor_shift": 0.0}


def with_defaults(params: dict) -> dict:
    """`params` plus the fixed values of the parameters the fit did not free."""
    return {**FIXED_DEFAULTS, **params}
