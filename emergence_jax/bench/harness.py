"""The one timing harness every `emergence-jax bench` uses: interleaved rounds, equal threads, JSON.

How a comparison is timed (`Bench.compare`):
- both sides run once untimed (compilation, caches, allocator warm-up; our first call's extra time is
  reported as `compile_s`), then `--rounds` timed rounds (default 5). Each round runs both sides
  back to back, alternating which goes first (ours, reference, reference, ours, ...), so a slow
  spell of the machine hits both sides alike.
- each round gives a rate (work units per second, e.g. tokens/s); a measurement reports the median,
  min and max rate of each side and `ratio` = median ours / median reference (> 1: ours is faster).
  For a time (`unit="s"`, lower is better) `ratio` is reference / ours, so > 1 still means ours wins.

Threads are pinned equally, in one process: before JAX or PyTorch is imported, `pin_threads(n)`
restricts the process to `n` CPUs with `os.sched_setaffinity` (XLA:CPU sizes its thread pool from
the CPUs the process may use) and sets `OMP_NUM_THREADS`/`MKL_NUM_THREADS`; `torch.set_num_threads(n)`
is called when torch is imported. `environment()` records what both sides actually got.

The machine looks loaded when the 1-minute load average before a bench exceeds a third of its CPUs
or a side's rounds spread by more than 20% around their median; both print a warning and are kept
in the JSON (`environment.warnings`), so a table made from a loaded run says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# Dense bf16 peak FLOP/s by device kind (vendor datasheets), for MFU.
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}
LOAD_WARNING = 1 / 3  # 1-minute load average per CPU above which the machine is called loaded
SPREAD_WARNING = 0.20  # (max - min) / median of one side's rounds above which the rounds are called noisy


def add_arguments(parser: argparse.ArgumentParser, *, rounds: int = 5) -> None:
    """The flags every bench shares: rounds, threads, no reference, JSON output."""
    group = parser.add_argument_group("timing (all benches)")
    group.add_argument("--rounds", type=int, default=rounds, help=f"timed rounds per side after one warm-up call (default {rounds})")
    group.add_argument("--threads", type=int, default=None, help="CPUs (and threads) given to both sides; default: all this process may use")
    group.add_argument("--no-reference", action="store_true", help="time only our side (e.g. on an accelerator, or sizes too large for CPU torch)")
    group.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE", help="write the results as JSON to FILE (no FILE: to stdout, table to stderr)")


def pin_threads(threads: int | None) -> int:
    """Restrict this process to `threads` CPUs (all allowed ones when None) before JAX/torch start;
    returns the count. Both sides then compute with the same number of threads."""
    from emergence_jax.errors import UserError

    allowed = sorted(os.sched_getaffinity(0))
    if threads is not None:
        if not 1 <= threads <= len(allowed):
            raise UserError(f"--threads {threads}: this process may use {len(allowed)} CPUs; give 1..{len(allowed)}")
        if len(allowed) != threads and ("jax" in sys.modules or "torch" in sys.modules):
            print("warning: --threads set after JAX/torch were imported; XLA's thread pool may keep its old size", file=sys.stderr)
        os.sched_setaffinity(0, allowed[:threads])
    count = len(os.sched_getaffinity(0))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(count)
    return count


def set_torch_threads(threads: int) -> None:
    """The reference side's intra-op threads: the same count as ours (`Bench.threads`)."""
    import torch

    torch.set_num_threads(threads)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _versions() -> dict[str, str]:
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "torch", "transformers", "numpyro"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclasses.dataclass
class Measurement:
    """One row: medians of each side's per-round rates, their ranges, and the ratio."""

    name: str
    unit: str
    ours: float
    reference: float | None
    ratio: float | None
    ours_range: tuple[float, float]
    reference_range: tuple[float, float] | None
    rounds: int
    compile_s: float | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        row = {"name": self.name, "ours": self.ours, "reference": self.reference, "unit": self.unit, "ratio": self.ratio,
               "ours_min": min(self.ours_range), "ours_max": max(self.ours_range), "rounds": self.rounds}
        if self.reference_range is not None:
            row.update(reference_min=min(self.reference_range), reference_max=max(self.reference_range))
        if self.compile_s is not None:
            row["compile_s"] = self.compile_s
        return {**row, **self.extra}


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


class Bench:
    """Collects the measurements of one bench run; prints them as a table and/or JSON."""

    def __init__(self, name: str, args: argparse.Namespace):
        self.name = name
        self.rounds = args.rounds
        self.json = args.json
        self.no_reference = args.no_reference
        self.threads = pin_threads(args.threads)
        self.measurements: list[Measurement] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.load_before = os.getloadavg()
        if self.load_before[0] > LOAD_WARNING * os.cpu_count():
            self._warn(f"the machine looks loaded: 1-minute load average {self.load_before[0]:.2f} on {os.cpu_count()} CPUs; "
                       "timings are noisy, ratios of interleaved rounds less so")

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        print(f"warning: {message}", file=sys.stderr)

    def say(self, line: str) -> None:
        """A line describing the setup (printed now, kept in the JSON's `notes`)."""
        self.notes.append(line)
        print(line, file=sys.stderr if self.json == "-" else sys.stdout, flush=True)

    def compare(
        self,
        name: str,
        unit: str,
        work: float,
        ours: Callable[[], Any],
        reference: Callable[[], Any] | None = None,
        *,
        rounds: int | None = None,
        reference_work: float | None = None,
        **extra: Any,
    ) -> Measurement:
        """Time `ours` (and `reference`) interleaved; each call does `work` units (`unit` is
        "<units>/s"; a reference call does `reference_work`, default the same), or, with `unit="s"`,
        the measurement is the call's seconds."""
        rounds = rounds or self.rounds
        if self.no_reference:
            reference = None
        first = _timed(ours)
        if reference is not None:
            _timed(reference)
        ours_s: list[float] = []
        ref_s: list[float] = []
        for i in range(rounds):
            if reference is not None and i % 2:
                ref_s.append(_timed(reference))
                ours_s.append(_timed(ours))
            else:
                ours_s.append(_timed(ours))
                if reference is not None:
                    ref_s.append(_timed(reference))
        return self.add(name, unit, work, ours_s, ref_s or None, compile_s=max(first - statistics.median(ours_s), 0.0),
                        reference_work=reference_work, **extra)

    def add(self, name: str, unit: str, work: float, ours_seconds: list[float], reference_seconds: list[float] | None = None,
            *, compile_s: float | None = None, reference_work: float | None = None, **extra: Any) -> Measurement:
        """Record a measurement from per-round seconds measured elsewhere (see `compare`)."""
        is_time = unit == "s"
        ref_work = work if reference_work is None else reference_work
        ours_values = [s if is_time else work / s for s in ours_seconds]
        ref_values = [s if is_time else ref_work / s for s in reference_seconds] if reference_seconds else None
        ours_median = statistics.median(ours_values)
        ref_median = statistics.median(ref_values) if ref_values else None
        ratio = None
        if ref_median is not None:
            ratio = ref_median / ours_median if is_time else ours_median / ref_median
        for side, values in (("ours", ours_values), ("reference", ref_values)):
            if values and len(values) > 1 and (max(values) - min(values)) / statistics.median(values) > SPREAD_WARNING:
                self._warn(f"{name}: {side} rounds spread {100 * (max(values) - min(values)) / statistics.median(values):.0f}% "
                           "around their median; the machine looks loaded")
        measurement = Measurement(
            name, unit, ours_median, ref_median, ratio, (min(ours_values), max(ours_values)),
            (min(ref_values), max(ref_values)) if ref_values else None, len(ours_values), compile_s, extra,
        )
        self.measurements.append(measurement)
        return measurement

    def environment(self) -> dict[str, Any]:
        """The machine and settings both sides ran under."""
        env: dict[str, Any] = {
            "machine": platform.node(),
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "threads": self.threads,
            "load_average_before": [round(x, 2) for x in self.load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "rounds": self.rounds,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "versions": _versions(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if "jax" in sys.modules:
            import jax

            device = jax.devices()[0]
            env["jax_device"] = f"{jax.device_count()} x {device.device_kind} ({device.platform})"
        if "torch" in sys.modules:
            import torch

            env["torch_threads"] = torch.get_num_threads()
        env["warnings"] = list(self.warnings)
        return env

    def result(self) -> dict[str, Any]:
        return {"bench": self.name, "measurements": [m.to_json() for m in self.measurements],
                "environment": self.environment(), "notes": list(self.notes)}

    def report(self) -> dict[str, Any]:
        """Print the table (and write the JSON when asked); returns the JSON object."""
        from emergence_jax.io import to_json_text, write_json

        result = self.result()
        out = sys.stderr if self.json == "-" else sys.stdout
        print(format_table(self.measurements), file=out)
        env = result["environment"]
        print(f"{env['threads']} threads each side ({env.get('torch_threads', '-')} torch); {env['cpu']}; "
              f"load {env['load_average_before'][0]:.2f} -> {env['load_average_after'][0]:.2f} on {env['cpus']} CPUs", file=out)
        if self.json == "-":
            print(to_json_text(result))
        elif self.json:
            write_json(self.json, result)
        return result


def format_table(measurements: list[Measurement]) -> str:
    """Fixed-width text table: median [min-max] per side and the ratio."""
    lines = [f"{'measurement':<34}{'unit':>10}{'ours median [min-max]':>30}{'reference median [min-max]':>32}{'ratio':>8}{'compile s':>11}"]

    def cell(median, low_high):
        if median is None:
            return "-"
        return f"{_num(median)} [{_num(low_high[0])}-{_num(low_high[1])}]"

    for m in measurements:
        ratio = f"{m.ratio:.2f}" if m.ratio is not None else "-"
        compile_s = f"{m.compile_s:.1f}" if m.compile_s is not None else "-"
        lines.append(f"{m.name:<34}{m.unit:>10}{cell(m.ours, m.ours_range):>30}{cell(m.reference, m.reference_range):>32}{ratio:>8}{compile_s:>11}")
    return "\n".join(lines)


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def peak_flops(device_kind: str, override_tflops: float | None = None) -> float | None:
    """Dense bf16 peak FLOP/s of a device kind (or `override_tflops` x 1e12); None when unknown."""
    if override_tflops:
        return override_tflops * 1e12
    return next((v for k, v in PEAK_FLOPS.items() if k in device_kind), None)
