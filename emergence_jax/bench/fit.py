"""`emergence-jax bench fit`: maximum likelihood and NUTS on a simulated 200-row sweep, beside
`scipy.optimize.curve_fit` fitting the same law to the same rows (least squares, one start)."""

from __future__ import annotations

import argparse
import time
import warnings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=200, help="approximate number of results rows in the simulated sweep (default 200)")
    parser.add_argument("--samples", type=int, default=1000, help="NUTS draws per chain (default 1000, after as many warmup iterations)")
    parser.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions; the best is reported (default 3)")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy.optimize import curve_fit

    from emergence_jax.laws.bayes import NUTSSampler
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

    def best_time(fn):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
        return min(times), result

    mle_time, mle = best_time(lambda: fit_mle(sweep, spec, seed=0))
    bounds = ([1.5, 0.0, 0.05, 1e-3], [3.5, 2.0, 5.0, 200.0])
    reference_time, (popt, _) = best_time(lambda: curve_fit(law, (sweep.loss, sweep.train_examples), sweep.accuracy, p0=[2.6, 0.3, 1.0, 2.0], bounds=bounds))

    sampler = NUTSSampler(spec, finetuned=True, chains=args.chains, warmup=args.samples, samples=args.samples, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        sampler.run(sweep, mle=mle)
        first = time.perf_counter() - start
        nuts_time, posterior = best_time(lambda: sampler.run(sweep, mle=mle))

    print(f"simulated sweep: {sweep.n_rows} rows; true E0 = {truth['E0']}")
    print(f"{'work':<44} {'seconds':>9} {'E0':>8}")
    print(f"{'maximum likelihood (ours, 24 starts)':<44} {mle_time:9.3f} {mle.params['E0']:8.4f}")
    print(f"{'scipy.optimize.curve_fit (1 start, LSQ)':<44} {reference_time:9.3f} {popt[0]:8.4f}")
    print(f"{f'NUTS {args.chains}x{args.samples} (+{args.samples} warmup), compiled':<44} {nuts_time:9.3f} {np.median(posterior.flat('E0')):8.4f}")
    print(f"{'NUTS first run (includes compilation)':<44} {first:9.3f}")
    print(f"time ratio curve_fit / ours (MLE): {reference_time / mle_time:.2f}  (ours does {24 + 1} optimisations, curve_fit one)")
    return 0
