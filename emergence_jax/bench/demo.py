"""`emergence-jax bench demo`: the main job's speed, `emergence-jax demo --quick` end to end.

Each round runs `emergence-jax demo --quick --out TMP` in a fresh temporary folder, as a user would
(a new process: imports and compilation included), and times it. Stage times come from the demo's
own records: `summary.json`'s `stage_seconds` when the demo writes it, else its `[demo] ... in N s`
log lines (pretraining per rung, finetuning per checkpoint, the fit); what no stage accounts for
(start-up, imports, compilation outside the stages) is `other`. The child's CPU seconds (user + system) are
reported too: on a loaded machine they are a steadier figure than wall time (2 idle cores give wall
≈ CPU / 2 at best). There is no reference implementation: with
`--baseline FILE` (an earlier `bench demo` or `bench all` JSON) the earlier figures are the
reference, so `ratio` < 1 shows a slowdown.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ROUNDS = 1  # one demo --quick is minutes; ask for more with --rounds
LOG_STAGES = {"pretrained": "pretrain", "finetuned": "finetune", "fitted": "fit"}
LOG_LINE = re.compile(r"^\[demo\] .*\b(pretrained|finetuned|fitted) in (\d+(?:\.\d+)?) s\b")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--baseline", type=Path, default=None, help="earlier `bench demo`/`bench all` JSON whose demo figures are the reference")
    parser.add_argument("--keep", type=Path, default=None, help="keep the last round's demo folder here (default: deleted)")


def stage_seconds(out: Path, log: str) -> dict[str, float]:
    """Seconds per demo stage of one run: `summary.json`'s `stage_seconds`, else summed log lines."""
    from emergence_jax.io import read_json

    summary = read_json(out / "summary.json", what="demo summary")
    if isinstance(summary.get("stage_seconds"), dict):
        return {str(k): float(v) for k, v in summary["stage_seconds"].items()}
    stages: dict[str, float] = {}
    for line in log.splitlines():
        match = LOG_LINE.match(line.strip())
        if match:
            stage = LOG_STAGES[match.group(1)]
            stages[stage] = stages.get(stage, 0.0) + float(match.group(2))
    return stages


def _baseline(path: Path | None) -> dict[str, float]:
    """measurement name -> our median in an earlier demo bench JSON."""
    from emergence_jax.errors import UserError
    from emergence_jax.io import read_json

    if path is None:
        return {}
    document = read_json(path, what="bench JSON")
    benches = document.get("benches", [document]) if isinstance(document, dict) else []
    rows = {row["name"]: row["ours"] for bench in benches if bench.get("bench") == "demo" for row in bench.get("measurements", [])}
    if not rows:
        raise UserError(f"--baseline {path}: holds no `bench demo` measurements; give a file from `emergence-jax bench demo --json FILE`")
    return rows


def measure(args: argparse.Namespace, bench) -> None:
    from emergence_jax.errors import UserError

    baseline = _baseline(args.baseline)
    runs: list[tuple[float, dict[str, float]]] = []
    cpu_seconds: list[float] = []
    bench.say(f"emergence-jax demo --quick in a fresh folder, {bench.rounds} round(s); {bench.threads} CPUs")
    for _ in range(bench.rounds):
        with tempfile.TemporaryDirectory(prefix="bench_demo_") as folder:
            out = Path(folder) / "demo"
            started = time.perf_counter()
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            done = subprocess.run(
                [sys.executable, "-m", "emergence_jax.cli", "demo", "--quick", "--out", str(out)], capture_output=True, text=True,
            )
            wall = time.perf_counter() - started
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu_seconds.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
            if done.returncode != 0:
                tail = [line for line in done.stderr.strip().splitlines() if line.strip() and "JAX_TRACEBACK_FILTERING" not in line][-3:]
                raise UserError(f"bench demo: `emergence-jax demo --quick` failed (exit {done.returncode}): {' | '.join(tail)}")
            stages = stage_seconds(out, done.stdout)
            if args.keep is not None:
                import shutil

                shutil.copytree(out, args.keep, dirs_exist_ok=True)
        stages["other"] = max(wall - sum(stages.values()), 0.0)
        runs.append((wall, stages))
    names = ["demo --quick wall time", *(f"stage: {stage}" for stage in runs[0][1])]
    for name in names:
        key = name.removeprefix("stage: ")
        seconds = [wall if name == names[0] else stages.get(key, 0.0) for wall, stages in runs]
        reference = [baseline[name]] if name in baseline else None
        bench.add(name, "s", 1.0, seconds, reference)
    name = "demo --quick CPU time (user + system)"
    bench.add(name, "s", 1.0, cpu_seconds, [baseline[name]] if name in baseline else None)
