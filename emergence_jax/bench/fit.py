"""`emergence-jax bench fit`: the emergence-law fit on a simulated ~200-row sweep, timed compiled.

Measurements (interleaved rounds, `bench.harness`):

- `nuts sampler, one form`: our compiled driver of numpyro's NUTS kernel (`laws.bayes`) beside
  `numpyro.infer.MCMC(NUTS(...))` on the same model, data, starts and settings (4 chains × draws,
  as many warmup). Draws/s of kept draws, all chains. MCMC re-traces and re-compiles on every `run`;
  the driver compiles once per setting and row count.
- `default fit, all forms`: what `emergence-jax fit` does by default (three forms, MLE + NUTS each,
  stacking, beta-binomial likelihood; model checks off), seconds per fit; no reference.
- `maximum likelihood, relu` beside `scipy.optimize.curve_fit` fitting the same law to the same
  rows (least squares, one start): fits/s.
"""

from __future__ import annotations

import argparse
import warnings

DEFAULT_ROUNDS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200, help="approximate number of results rows in the simulated sweep (default 200)")
    parser.add_argument("--samples", type=int, default=1000, help="NUTS draws per chain (default 1000, after as many warmup iterations)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")


def measure(args: argparse.Namespace, bench) -> None:
    import jax
    import numpy as np
    from scipy.optimize import curve_fit

    from emergence_jax.laws.bayes import MAX_TREE_DEPTH, TARGET_ACCEPT, NUTSSampler
    from emergence_jax.laws.fit import SamplerSettings, fit_emergence_law, make_spec
    from emergence_jax.laws.functions import LawSpec, predicted_accuracy
    from emergence_jax.laws.mle import fit_mle
    from emergence_jax.laws.model import anchor_amount, bound_model, model_args, sampling_starts
    from emergence_jax.laws.simulate import simulate_sweep_rows
    from emergence_jax.laws.sweep import sweep_from_records

    truth = {"E0": 2.3, "shift": 0.45, "alpha": 1.5, "amplitude": 1.0}
    law = LawSpec(form="relu", law="log_power", D0=5, D_ref=8000)
    checkpoints = max(3, round(args.rows / 13))
    sweep = sweep_from_records(simulate_sweep_rows(truth, law, losses=np.linspace(2.36, 2.9, checkpoints), concentration=300.0, seed=0))
    bench.say(f"simulated sweep: {sweep.n_rows} rows (beta-binomial, phi = 300); true E0 = {truth['E0']} nats")

    spec = make_spec(sweep, form="relu")
    mle = fit_mle(sweep, spec)
    draws = args.chains * args.samples

    # the sampler: our driver vs numpyro MCMC on the same model, data and starts
    sampler = NUTSSampler(spec, finetuned=True, chains=args.chains, warmup=args.samples, samples=args.samples)
    frame = mle.frame
    margs = model_args(sweep, frame, anchor_amount(sweep, spec))
    starts = sampling_starts(spec, True, sampler._chain_starts(mle, 0), margs)

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sampler.run(sweep, mle=mle)

    def reference():
        from numpyro.infer import MCMC, NUTS

        kernel = NUTS(bound_model(spec, True, sampling=True), target_accept_prob=TARGET_ACCEPT, dense_mass=True, max_tree_depth=MAX_TREE_DEPTH)
        mcmc = MCMC(kernel, num_warmup=args.samples, num_samples=args.samples, num_chains=args.chains, chain_method="vectorized", progress_bar=False, jit_model_args=True)
        mcmc.run(jax.random.PRNGKey(0), *margs, init_params=starts)
        return jax.block_until_ready(mcmc.get_samples())  # JAX returns before the draws exist; time the draws

    bench.compare("nuts sampler, one form (relu)", "draws/s", draws, ours, reference, reference_label="numpyro MCMC(NUTS)")

    # the default fit, end to end
    settings = SamplerSettings(chains=args.chains, warmup=args.samples, samples=args.samples, progress=False)

    def default_fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fit_emergence_law(sweep, sampler=settings, checks=False)

    measurement = bench.compare("default fit, all forms (MLE + NUTS + stacking)", "s", 1, default_fit)
    fit = default_fit()
    E0 = fit.summary()["fewshot_emergence_loss"]
    bench.say(f"default fit: E0 {E0['median']:.4f} [{E0['q05']:.4f}, {E0['q95']:.4f}] nats; median {measurement.ours:.1f} s per fit")
    for form, entry in fit.comparison.items():
        d = entry["diagnostics"]
        bench.say(f"  {form:<9} weight {entry['weight']:.2f}  R-hat {d['r_hat_max']:.3f}  divergences {d['divergences']}  mean leapfrog steps {d['mean_leapfrog_steps']:.1f}")

    # maximum likelihood vs scipy least squares
    def law_curve(x, E0, shift, alpha, amplitude):
        loss, D = x
        return predicted_accuracy({"E0": E0, "shift": shift, "alpha": alpha, "amplitude": amplitude}, loss, D, sweep.chance, law)

    bounds = ([1.5, 0.0, 0.05, 1e-3], [3.5, 2.0, 5.0, 200.0])
    bench.compare(
        "maximum likelihood, relu (E0 profile over every gap + L-BFGS-B)", "fits/s", 1,
        lambda: fit_mle(sweep, spec),
        lambda: curve_fit(law_curve, (sweep.loss, sweep.train_examples), sweep.accuracy, p0=[2.6, 0.3, 1.0, 2.0], bounds=bounds),
        reference_label="scipy curve_fit (1 start)",
    )
