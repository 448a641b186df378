"""`emergence-jax bench fit`: the default fit (all forms, stacking, beta-binomial, numpyro MCMC
NUTS) of a simulated ~200-row sweep, timed compiled, beside `scipy.optimize.curve_fit` fitting the
same law to the same rows (least squares, one start). Prints the machine's load average, since
timings on a shared machine are only as good as its idle cores."""

from __future__ import annotations

import argparse
import os
import time
import warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200, help="approximate number of results rows in the simulated sweep (default 200)")
    parser.add_argument("--samples", type=int, default=1000, help="NUTS draws per chain (default 1000, after as many warmup iterations)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    parser.add_argument("--repeats", type=int, default=2, help="timed compiled repetitions; the best is reported (default 2)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy.optimize import curve_fit

    from emergence_jax.laws.fit import SamplerSettings, fit_emergence_law, make_spec
    from emergence_jax.laws.functions import LawSpec, predicted_accuracy
    from emergence_jax.laws.mle import fit_mle
    from emergence_jax.laws.simulate import simulate_sweep_rows
    from emergence_jax.laws.sweep import sweep_from_records

    spec = LawSpec(form="relu", law="log_power", D0=5, D_ref=8000)
    truth = {"E0": 2.3, "shift": 0.45, "alpha": 1.5, "amplitude": 2.5}
    checkpoints = max(3, round(args.rows / 13))
    sweep = sweep_from_records(simulate_sweep_rows(truth, spec, losses=np.linspace(2.36, 2.9, checkpoints), seed=0))

    def law(x, E0, shift, alpha, amplitude):
        loss, D = x
        return predicted_accuracy({"E0": E0, "shift": shift, "alpha": alpha, "amplitude": amplitude}, loss, D, sweep.chance, spec)

    def best_time(fn, repeats):
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        return min(times), result

    load_before = os.getloadavg()
    relu = make_spec(sweep, form="relu")
    fit_mle(sweep, relu)  # compile
    mle_time, mle = best_time(lambda: fit_mle(sweep, relu), args.repeats)
    bounds = ([1.5, 0.0, 0.05, 1e-3], [3.5, 2.0, 5.0, 200.0])
    reference_time, (popt, _) = best_time(lambda: curve_fit(law, (sweep.loss, sweep.train_examples), sweep.accuracy, p0=[2.6, 0.3, 1.0, 2.0], bounds=bounds), 3)

    sampler = SamplerSettings(chains=args.chains, warmup=args.samples, samples=args.samples, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        fit_emergence_law(sweep, sampler=sampler)
        first = time.perf_counter() - start
        fit_time, fit = best_time(lambda: fit_emergence_law(sweep, sampler=sampler), args.repeats)
    load_after = os.getloadavg()
    E0 = fit.summary()["fewshot_emergence_loss"]

    print(f"simulated sweep: {sweep.n_rows} rows; true E0 = {truth['E0']} nats; {os.cpu_count()} CPU cores")
    print(f"load average (1/5/15 min): before {load_before[0]:.1f}/{load_before[1]:.1f}/{load_before[2]:.1f}, after {load_after[0]:.1f}/{load_after[1]:.1f}/{load_after[2]:.1f}")
    print(f"{'work':<64} {'seconds':>9} {'E0 (nats)':>10}")
    print(f"{'maximum likelihood, relu (E0 profile over every gap + L-BFGS-B)':<64} {mle_time:9.3f} {mle.params['E0']:10.4f}")
    print(f"{'scipy.optimize.curve_fit, relu (1 start, least squares)':<64} {reference_time:9.3f} {popt[0]:10.4f}")
    label = f"default fit: 3 forms x (MLE + NUTS {args.chains}x{args.samples}, +{args.samples} warmup) + stacking + checks, compiled"
    print(f"{label:<64} {fit_time:9.3f} {E0['median']:10.4f}")
    print(f"{'the same, first run (includes compilation)':<64} {first:9.3f}")
    for form, entry in fit.comparison.items():
        d = entry["diagnostics"]
        print(f"  {form:<9} weight {entry['weight']:.2f}  R-hat {d['r_hat_max']:.3f}  divergences {d['divergences']}  mean leapfrog steps {d['mean_leapfrog_steps']:.1f}")
    return 0
