"""PassUntil (Hu et al. 2023): sample each instance until `r` samples pass, estimate its pass rate.

A model far below emergence may pass an instance with probability 1e-5: invisible to greedy
accuracy, but measurable by sampling until `r` passes appear. Per instance we record the number of
samples `K` it took (inverse binomial sampling: the failures `K - r` are negative-binomial).

Estimates (`estimate_pass_until`):

- Point estimate: the maximum-likelihood `PU = r / K`, as Hu et al. report it. The likelihood of
  any sequential design whose stopping rule looks only at the outcomes is `p^s (1-p)^(n-s)` for `s`
  passes in `n` samples, so the MLE is `s / n` for completed and censored instances alike, and the
  task scaling law (`emergence_jax.laws.pass_until_law`) fits that same likelihood. `r / K` is
  biased upwards for small `r` (for `r = 1`, `E[1/K] > p`); the unbiased estimator of inverse
  sampling, `(r - 1) / (K - 1)` (Haldane 1945), is reported beside it as `unbiased` when `r >= 2`
  (for `r = 1` it is 0 unless the first sample passed, useless per instance). We keep the MLE as the
  headline because `log(-log PU)` must be finite for every resolved instance and because it is the
  quantity the likelihood-based law fit is consistent with.
- Interval: exact for the inverse-sampling design. `P(K <= k) = P(Binomial(k, p) >= r)`, so the
  two-sided `confidence` interval is `[BetaInv(a/2; r, K-r+1), BetaInv(1-a/2; r, K-r)]`
  (`a = 1 - confidence`; the upper end is 1 when `K = r`). Its upper end is tighter than
  Clopper-Pearson's for `r` passes in a fixed `K`, because `K` was not fixed in advance.
- Censoring: an instance that reaches the cap (or the run's end) with `s < r` passes in `n`
  samples gives `Binomial(n, p) <= s`, and the exact bounds are Clopper-Pearson's on `(s, n)`;
  `upper_one_sided` is the one-sided `confidence` upper bound (for `s = 0`: `1 - a^(1/n)`).
  Outcomes are ordered (censored with 0, 1, ... passes, then completed with K from the cap down to
  r), and every bound is the exact tail bound in that order, so coverage is at least nominal.

Adaptive allocation (`run_pass_until`): rounds of about `round_budget` samples are split evenly
over the instances that are still unresolved (fewer than `r` passes and below the cap), so the
budget flows to the hard instances as easy ones finish. Within an instance's batch, samples are in
order and `K` is the position of the r-th pass; later samples of that batch are discarded, which
keeps the inverse-sampling design exact. The run state is written atomically after every round, and
every round's randomness derives from (seed, round, batch size), so a killed run resumes with
results identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from scipy import stats

from emergence_jax.errors import UserError
from emergence_jax.io import write_json

STATE_FORMAT = "emergence_jax/pass_until/1"


@dataclasses.dataclass(frozen=True)
class PassUntilEstimate:
    """Pass probability of one instance from `passes` passes in `samples` samples (probabilities).

    `completed` means `passes == r` (so `samples` is K); otherwise the result is censored and
    `upper_one_sided` is the bound to quote.
    """

    passes: int
    samples: int
    r: int
    completed: bool
    estimate: float
    unbiased: float | None
    lower: float
    upper: float
    upper_one_sided: float
    confidence: float

    @property
    def censored(self) -> bool:
        return not self.completed


def estimate_pass_until(passes: int, samples: int, *, r: int, confidence: float = 0.9) -> PassUntilEstimate:
    """Exact PassUntil estimate and interval; see the module docstring for the formulas."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if r < 1 or passes < 0 or passes > r or samples < passes:
        raise ValueError(f"need 0 <= passes <= r, r >= 1 and samples >= passes; got passes={passes}, samples={samples}, r={r}")
    alpha = 1.0 - confidence
    completed = passes == r
    if completed:
        lower = float(stats.beta.ppf(alpha / 2, r, samples - r + 1))
        upper = 1.0 if samples == r else float(stats.beta.ppf(1 - alpha / 2, r, samples - r))
        upper_one_sided = 1.0 if samples == r else float(stats.beta.ppf(1 - alpha, r, samples - r))
        unbiased = (r - 1) / (samples - 1) if r >= 2 else None
    else:
        lower = 0.0 if passes == 0 else float(stats.beta.ppf(alpha / 2, passes, samples - passes + 1))
        upper = 1.0 if samples == passes else float(stats.beta.ppf(1 - alpha / 2, passes + 1, samples - passes))
        upper_one_sided = 1.0 if samples == passes else float(stats.beta.ppf(1 - alpha, passes + 1, samples - passes))
        unbiased = None
    estimate = passes / samples if samples > 0 else float("nan")
    return PassUntilEstimate(passes, samples, r, completed, estimate, unbiased, lower, upper, upper_one_sided, confidence)


class Sampler(Protocol):
    """Draws `n` independent completions for every prompt, in order, using only `rng`."""

    def sample(self, prompts: Sequence[Any], n: int, rng: np.random.Generator) -> list[list[str]]: ...


Verifier = Callable[[Any, str], bool]
ProgressCallback = Callable[[int, int, int], None]  # (resolved instances, total instances, samples drawn)


def run_pass_until(
    prompts: Sequence[Any],
    sampler: Sampler,
    verify: Verifier,
    *,
    state_path: str | os.PathLike,
    r: int = 1,
    max_samples: int = 100_000,
    round_budget: int = 4096,
    seed: int = 0,
    confidence: float = 0.9,
    instance_ids: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    max_rounds: int | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run (or resume) PassUntil over `prompts`; returns the final state, also written to `state_path`.

    `round_budget` is the number of samples per round (split over unresolved instances, at least one
    each); `max_samples` is the per-instance cap K_max. `metadata` (model id, task, parameters,
    pretraining loss, ...) is stored beside the results. An existing `state_path` written with the
    same settings is resumed; different settings are a `UserError`. `max_rounds` stops after that many
    rounds in this call (the state stays resumable).
    """
    if r < 1 or max_samples < r or round_budget < 1:
        raise UserError(f"PassUntil needs r >= 1, max_samples >= r and round_budget >= 1 (got r={r}, max_samples={max_samples}, round_budget={round_budget})")
    ids = [str(i) for i in (instance_ids if instance_ids is not None else range(len(prompts)))]
    if len(ids) != len(prompts) or len(set(ids)) != len(ids):
        raise UserError("PassUntil instance ids must be unique and one per prompt")
    settings = {"r": r, "max_samples": max_samples, "round_budget": round_budget, "seed": seed, "confidence": confidence, "instance_ids": ids}
    state_path = Path(state_path)
    multi_host = _process_count() > 1
    if multi_host:
        # Process 0 reads (or starts) the state and verifies; every process samples its share of each
        # round's rows (the batch is split over the hosts' devices) and adopts process 0's counts.
        state = _load_state_on_writer(state_path, settings, metadata or {})
        if not _writes_files():
            verify = _no_verdict
    else:
        state = _load_or_init_state(state_path, settings, metadata or {})
    instances = state["instances"]
    rounds_this_call = 0
    _report(progress, state, r, max_samples)
    while not state["finished"] and (max_rounds is None or rounds_this_call < max_rounds):
        unresolved = [j for j, inst in enumerate(instances) if _unresolved(inst, r, max_samples)]
        share = max(1, math.ceil(round_budget / len(unresolved)))
        groups: dict[int, list[int]] = {}
        for j in unresolved:
            groups.setdefault(min(share, max_samples - instances[j]["samples"]), []).append(j)
        for n, members in sorted(groups.items()):
            rng = np.random.default_rng([seed, state["rounds"], n])
            completions = sampler.sample([prompts[j] for j in members], n, rng)
            if len(completions) != len(members) or any(len(c) != n for c in completions):
                raise RuntimeError(f"sampler returned the wrong shape: wanted {len(members)} prompts x {n} completions")
            for j, outputs in zip(members, completions):
                _absorb(instances[j], prompts[j], outputs, verify, r)
        if multi_host:
            _adopt_writer_counts(instances)
        state["rounds"] += 1
        rounds_this_call += 1
        if not any(_unresolved(inst, r, max_samples) for inst in instances):
            state["finished"] = True
            state["results"] = [{"id": i["id"]} | _as_record(e) for i, e in zip(instances, estimates_from_state(state))]
        if _writes_files():
            write_json(state_path, state, indent=1)
        _report(progress, state, r, max_samples)
    return state


def _writes_files() -> bool:
    """Whether this process writes the state file: the only one, or process 0 of a multi-host job
    (every process samples the same completions, so they hold the same state)."""
    import sys

    return "jax" not in sys.modules or sys.modules["jax"].process_index() == 0


def _process_count() -> int:
    import sys

    return 1 if "jax" not in sys.modules else sys.modules["jax"].process_count()


def _no_verdict(prompt: Any, completion: str) -> bool:
    """The verifier of processes other than 0 in a multi-host job: they take process 0's counts."""
    return False


def _load_state_on_writer(path: Path, settings: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    """`_load_or_init_state` on process 0 (the only one that reads the state file), handed to all."""
    from emergence_jax.distributed import broadcast_json

    payload = None
    if _writes_files():
        try:
            payload = {"state": _load_or_init_state(path, settings, metadata)}
        except UserError as err:
            payload = {"error": str(err)}
    payload = broadcast_json(payload)
    if "error" in payload:
        raise UserError(payload["error"])
    return payload["state"]


def _adopt_writer_counts(instances: list[dict[str, Any]]) -> None:
    """Set every instance's passes and samples to process 0's (only process 0 verifies)."""
    from jax.experimental import multihost_utils

    counts = np.asarray([[i["passes"], i["samples"]] for i in instances], np.int32)
    counts = np.asarray(multihost_utils.broadcast_one_to_all(counts))
    for instance, (passes, samples) in zip(instances, counts.tolist()):
        instance["passes"], instance["samples"] = passes, samples


def estimates_from_state(state: dict[str, Any]) -> list[PassUntilEstimate]:
    """Per-instance estimates from a (possibly unfinished) state; unfinished instances are censored."""
    s = state["settings"]
    return [estimate_pass_until(i["passes"], i["samples"], r=s["r"], confidence=s["confidence"]) for i in state["instances"]]


def _as_record(estimate: PassUntilEstimate) -> dict[str, Any]:
    return dataclasses.asdict(estimate) | {"censored": estimate.censored}


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a PassUntil state/results file, with a one-line error if it is not one."""
    path = Path(path)
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such PassUntil results file") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); rerun `emergence-jax pass-until` to rewrite it") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: not a PassUntil results file (field 'format' must be {STATE_FORMAT!r})")
    return state


def _load_or_init_state(path: Path, settings: dict[str, Any], metadata: dict[str, Any]) -> dict[str, Any]:
    if path.exists():
        state = read_state(path)
        if state["settings"] != settings or state["metadata"] != metadata:
            changed = sorted(k for k in settings if state["settings"].get(k) != settings[k])
            changed += sorted(k for k in set(metadata) | set(state["metadata"]) if state["metadata"].get(k) != metadata.get(k))
            raise UserError(f"{path}: exists with different settings ({', '.join(changed)}); pass the same settings to resume or choose a new --out")
        return state
    return {
        "format": STATE_FORMAT,
        "settings": settings,
        "metadata": metadata,
        "rounds": 0,
        "finished": False,
        "instances": [{"id": i, "passes": 0, "samples": 0} for i in settings["instance_ids"]],
    }


def _unresolved(instance: dict[str, Any], r: int, max_samples: int) -> bool:
    return instance["passes"] < r and instance["samples"] < max_samples


def _absorb(instance: dict[str, Any], prompt: Any, outputs: Sequence[str], verify: Verifier, r: int) -> None:
    """Add one batch of ordered samples; stop counting at the r-th pass (that sample's index is K)."""
    for completion in outputs:
        instance["samples"] += 1
        if verify(prompt, completion):
            instance["passes"] += 1
            if instance["passes"] == r:
                return


def _report(progress: ProgressCallback | None, state: dict[str, Any], r: int, max_samples: int) -> None:
    if progress is not None:
        instances = state["instances"]
        resolved = sum(not _unresolved(i, r, max_samples) for i in instances)
        progress(resolved, len(instances), sum(i["samples"] for i in instances))
