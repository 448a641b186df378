"""`emergence-jax bench table FILE [FILE ...]`: the README's speed table, in Markdown, from the JSON
of `emergence-jax bench all --json FILE` (or of single benches' `--json FILE`), with the machine
that produced it. Paste the output into the README in place of the old table."""

from __future__ import annotations

import argparse
from typing import Any

from emergence_jax.errors import UserError


def _benches(document: Any, source: str) -> list[dict]:
    if isinstance(document, dict) and "benches" in document:
        benches = document["benches"]
    elif isinstance(document, dict) and "bench" in document:
        benches = [document]
    else:
        raise UserError(f"{source}: not bench JSON (expected 'benches' or 'bench'); make it with emergence-jax bench all --json {source}")
    for bench in benches:
        if not isinstance(bench, dict) or not isinstance(bench.get("measurements"), list):
            raise UserError(f"{source}: a bench entry has no 'measurements' list; regenerate the file with emergence-jax bench all --json")
    return benches


def _value(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _cell(row: dict, side: str) -> str:
    median = row.get(side)
    if median is None:
        return "–"
    low, high = row.get(f"{side}_min"), row.get(f"{side}_max")
    spread = f" ({_value(low)}–{_value(high)})" if low is not None and high is not None else ""
    return f"{_value(median)}{spread}"


def machine_line(environment: dict) -> str:
    """One sentence naming the machine and the settings the figures were measured under."""
    versions = environment.get("versions", {})
    load = environment.get("load_average_before", [None])[0]
    parts = [
        f"{environment.get('cpu', 'unknown CPU')}, {environment.get('cpus', '?')} CPUs",
        f"{environment.get('threads', '?')} threads on each side",
        f"{environment.get('rounds', '?')} interleaved rounds, medians (min–max)",
        ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("jax", "flax", "torch", "transformers")),
        f"load average {load:.2f} at start" if load is not None else "",
        environment.get("date", ""),
    ]
    line = "Measured on " + "; ".join(p for p in parts if p) + "."
    warnings = environment.get("warnings") or []
    if warnings:
        line += f" **Warning: {len(warnings)} loaded-machine warning(s) during the run; treat the figures as noisy.**"
    return line


def markdown_table(benches: list[dict]) -> str:
    lines = ["| bench | measurement | unit | ours | reference | ratio |", "|---|---|---|---:|---:|---:|"]
    for bench in benches:
        for row in bench["measurements"]:
            ratio = row.get("ratio")
            lines.append(
                f"| `bench {bench['bench']}` | {row['name']} | {row['unit']} | {_cell(row, 'ours')} | {_cell(row, 'reference')} | "
                f"{'–' if ratio is None else f'{ratio:.2f}×'} |"
            )
    environments = [b.get("environment", {}) for b in benches]
    machines = {machine_line({k: v for k, v in e.items() if k not in ("date", "load_average_before", "warnings")}) for e in environments}
    first = environments[0] if environments else {}
    merged = {**first, "warnings": [w for e in environments for w in e.get("warnings", [])]}
    note = machine_line(merged)
    if len(machines) > 1:
        note += " (The benches ran on more than one machine or setting; see the JSON.)"
    lines += ["", note, "Ratio > 1: ours is faster (rates: ours / reference; times: reference / ours)."]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    from emergence_jax.io import read_json

    parser = argparse.ArgumentParser(prog="emergence-jax bench table", description=__doc__)
    parser.add_argument("files", nargs="+", help="JSON written by `emergence-jax bench all --json FILE` or `bench NAME --json FILE`")
    args = parser.parse_args(argv)
    benches = [b for path in args.files for b in _benches(read_json(path, what="bench JSON"), path)]
    print(markdown_table(benches))
    return 0
