"""lm-evaluation-harness output folders -> results records (DESIGN.md §4).

The harness (EleutherAI/lm-evaluation-harness 0.4.x, `lm_eval --output_path DIR [--log_samples]`)
writes, per model, `results_<date>.json` and, with `--log_samples`, one
`samples_<task>_<date>.jsonl` per task. We read, per task in `results`:

- metric values keyed "<metric>,<filter>" (e.g. "acc,none", "exact_match,strict-match"); only
  accuracy-like metrics (a per-example 0/1 score, so the value is a fraction correct) are imported;
- shots from "n-shot" (or the task config's num_fewshot), evaluation examples from "n-samples"
  ("effective", i.e. after --limit);
- chance: 0 for generated answers (output_type generate_until); for multiple choice 1/k from a
  literal choice list in the config (MMLU's ["A", "B", "C", "D"]) or the mean 1/k over the samples
  file's per-example choices; otherwise --chance TASK=VALUE.

When a samples file is present it is checked against the results file (same number of examples,
same mean per metric) and, for multiple choice, gives `correct_prob` and `logprob` (the softmax
probability and log-likelihood, nats, of the correct choice among the choices' unnormalised
log-likelihoods, averaged over examples) on the `acc` rows. Group tasks (e.g. mmlu_stem) are written
as pooled rows: correct answers and examples summed over their leaf subtasks, chance n-weighted.

Model ids: a row's `model` is the first of "<pretrained>@<revision>", "<pretrained>",
"<model_name>", "<model_name_sanitized>" found in the loss table (--loss-from), which also gives
`pretrain_loss` and may give loss_corpus, train_examples (a finetuned checkpoint's D, default 0),
seed, params, tokens, flops, step. Every malformed file is a one-line `UserError`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.io import read_csv_table

ACCURACY_METRICS = ("acc", "acc_norm", "exact_match", "em", "mc1")
LOSS_TABLE_COLUMNS = ("loss_corpus", "train_examples", "seed", "params", "tokens", "flops", "step")
RESULTS_NAME = re.compile(r"^results_(?P<date>.+)\.json$")
FILTER_NONE = "none"


def find_results_files(paths: list[str]) -> list[Path]:
    """Every results_*.json under the given folders (searched recursively) or named directly."""
    found = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if not RESULTS_NAME.match(path.name):
                raise UserError(f"{path}: not a harness results file (expected results_<date>.json); pass the harness's --output_path folder")
            found.append(path)
        elif path.is_dir():
            files = sorted(p for p in path.rglob("results_*.json") if RESULTS_NAME.match(p.name))
            if not files:
                raise UserError(f"{path}: no results_*.json inside; pass the folder given to lm_eval --output_path")
            found.extend(files)
        else:
            raise UserError(f"{path}: no such file or folder")
    return found


def read_loss_table(path: str) -> dict[str, dict]:
    """model id -> {'pretrain_loss': float, optional columns}, from a CSV with columns model,
    pretrain_loss[, loss_corpus, train_examples, seed, params, tokens, flops, step]."""
    rows = read_csv_table(path, required=("model", "pretrain_loss"), what="loss table", fix="--loss-from needs a CSV with columns model,pretrain_loss")
    table = {}
    for line, row in rows:
        model = (row.get("model") or "").strip()
        if not model:
            raise UserError(f"{path}: line {line}: empty model id")
        if model in table:
            raise UserError(f"{path}: line {line}: model {model!r} appears twice; keep one row per model")
        entry = {"pretrain_loss": row.get("pretrain_loss")}
        entry.update({c: row[c] for c in LOSS_TABLE_COLUMNS if row.get(c) not in (None, "")})
        table[model] = entry
    if not table:
        raise UserError(f"{path}: the loss table has no rows")
    return table


def _load_json(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({getattr(err, 'msg', err)}); is this a complete lm_eval results file?") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path}: expected a JSON object at the top level, got {type(payload).__name__}")
    for key in ("results",):
        if not isinstance(payload.get(key), dict):
            raise UserError(f"{path}: missing or malformed '{key}' object; not an lm_eval results file")
    return payload


def model_candidates(payload: dict, path: Path) -> list[str]:
    """Ids the results file may be known by in the loss table, most specific first."""
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    args = config.get("model_args")
    if isinstance(args, str):
        args = dict(part.split("=", 1) for part in args.split(",") if "=" in part)
    args = args if isinstance(args, dict) else {}
    pretrained = args.get("pretrained") or args.get("model") or args.get("path")
    revision = args.get("revision") or config.get("model_revision")
    candidates = []
    if isinstance(pretrained, str):
        if revision and revision != "main":
            candidates.append(f"{pretrained}@{revision}")
        candidates.append(pretrained)
    for key in ("model_name", "model_name_sanitized"):
        if isinstance(payload.get(key), str) and payload[key]:
            candidates.append(payload[key])
    candidates.append(path.parent.name)
    return list(dict.fromkeys(candidates))


def _number(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{where}: expected a finite number, got {value!r}; the results file is malformed")
    return float(value)


def _shots(payload: dict, task: str, path: Path) -> int:
    n_shot = payload.get("n-shot")
    value = n_shot.get(task) if isinstance(n_shot, dict) else None
    if value is None:
        config = (payload.get("configs") or {}).get(task) or {}
        value = config.get("num_fewshot")
    if value is None:
        raise UserError(f"{path}: task {task!r} has neither an 'n-shot' entry nor configs.num_fewshot; the results file is malformed")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or value != int(value):
        raise UserError(f"{path}: 'n-shot' of task {task!r} is {value!r}, not a whole number of examples")
    return int(value)


def _read_samples(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise UserError(f"{path}: line {number}: not valid JSON ({err.msg}); the samples file is truncated or malformed") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}: line {number}: expected a JSON object per line")
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: empty samples file; rerun lm_eval with --log_samples or delete the file")
    return rows


def _choice_logliks(sample: dict, where: str) -> list[float]:
    """The choices' log-likelihoods (nats) of one multiple-choice sample: filtered_resps is a list of
    [loglikelihood, is_greedy] pairs (numbers or their string forms)."""
    resps = sample.get("filtered_resps")
    if not isinstance(resps, list) or not resps:
        raise UserError(f"{where}: multiple-choice sample without a 'filtered_resps' list of [loglikelihood, is_greedy] pairs")
    values = []
    for item in resps:
        value = item[0] if isinstance(item, list) and item else item
        try:
            values.append(float(value))
        except (TypeError, ValueError):
            raise UserError(f"{where}: filtered_resps entry {item!r} is not a [loglikelihood, is_greedy] pair") from None
    return values


def _target_index(sample: dict, n_choices: int, where: str) -> int | None:
    target = sample.get("target")
    if isinstance(target, str) and target.strip().lstrip("-").isdigit():
        target = int(target)
    if isinstance(target, bool) or not isinstance(target, int):
        return None
    if not 0 <= target < n_choices:
        raise UserError(f"{where}: target {target} is not one of the {n_choices} choices")
    return target


class _TaskSamples:
    """One task's samples file, per filter: the per-example metric values and, for multiple
    choice, the correct choice's probability and log-likelihood."""

    def __init__(self, path: Path, multiple_choice: bool):
        self.path = path
        self.by_filter: dict[str, list[dict]] = {}
        for row in _read_samples(path):
            self.by_filter.setdefault(str(row.get("filter", FILTER_NONE)), []).append(row)
        self.multiple_choice = multiple_choice

    def metric_values(self, metric: str, filter_name: str) -> list[float]:
        rows = self.by_filter.get(filter_name)
        if not rows:
            raise UserError(f"{self.path}: no samples with filter {filter_name!r}; the samples file does not match its results file")
        values = []
        for index, row in enumerate(rows):
            if metric not in row:
                raise UserError(f"{self.path}: sample {index} (filter {filter_name!r}) has no {metric!r} value; the samples file is malformed")
            values.append(_number(row[metric], f"{self.path}: sample {index}, {metric!r}"))
        return values

    def choice_statistics(self) -> dict | None:
        """Mean 1/k (chance), correct_prob and logprob over the unfiltered multiple-choice samples."""
        if not self.multiple_choice or FILTER_NONE not in self.by_filter:
            return None
        inverse_k, probs, logprobs = [], [], []
        for index, row in enumerate(self.by_filter[FILTER_NONE]):
            where = f"{self.path}: sample {index}"
            ll = _choice_logliks(row, where)
            inverse_k.append(1.0 / len(ll))
            target = _target_index(row, len(ll), where)
            if target is None:
                continue
            top = max(ll)
            log_norm = top + math.log(sum(math.exp(v - top) for v in ll))
            probs.append(math.exp(ll[target] - log_norm))
            logprobs.append(ll[target])
        stats = {"chance": sum(inverse_k) / len(inverse_k)}
        if len(probs) == len(inverse_k):
            stats["correct_prob"] = sum(probs) / len(probs)
            stats["logprob"] = sum(logprobs) / len(logprobs)
        return stats


def _samples_path(results_path: Path, task: str) -> Path | None:
    date = RESULTS_NAME.match(results_path.name)["date"]
    path = results_path.parent / f"samples_{task}_{date}.jsonl"
    return path if path.is_file() else None


def _literal_choice_count(config: dict) -> int | None:
    choices = config.get("doc_to_choice")
    return len(choices) if isinstance(choices, list) and choices else None


def parse_chance_overrides(values: list[str] | None) -> dict[str, float]:
    """--chance TASK=VALUE pairs -> {task: chance}."""
    overrides = {}
    for item in values or []:
        task, sep, value = item.partition("=")
        try:
            chance = float(value)
        except ValueError:
            chance = float("nan")
        if not sep or not task or not 0.0 <= chance <= 1.0:
            raise UserError(f"--chance {item!r}: expected TASK=VALUE with VALUE in [0, 1], e.g. --chance hellaswag=0.25")
        overrides[task] = chance
    return overrides


def _split_metric_key(key: str) -> tuple[str, str] | None:
    if "," not in key:
        return None
    metric, filter_name = key.split(",", 1)
    if metric.endswith("_stderr"):
        return None
    return metric, filter_name


def metric_label(metric: str, filter_name: str) -> str:
    """The records' `metric` value: the harness metric, with its filter unless that is 'none'."""
    return metric if filter_name == FILTER_NONE else f"{metric}:{filter_name}"


def _group_leaves(payload: dict) -> dict[str, list[str]]:
    """group -> its leaf tasks (groups of groups expanded)."""
    raw = payload.get("group_subtasks") if isinstance(payload.get("group_subtasks"), dict) else {}

    def leaves(name, seen=()):
        children = raw.get(name) or []
        if not children or name in seen:
            return [name]
        out = []
        for child in children:
            out.extend(leaves(child, (*seen, name)))
        return out

    return {name: leaves(name) for name, children in raw.items() if children}


def rows_from_results_file(path: Path, losses: dict[str, dict], *, metrics: tuple[str, ...], chance_overrides: dict[str, float], skipped: set) -> tuple[float, list[dict]]:
    """(the file's 'date', Unix seconds or 0; its results rows, validated later by
    `records.write_records`)."""
    payload = _load_json(path)
    candidates = model_candidates(payload, path)
    model = next((c for c in candidates if c in losses), None)
    if model is None:
        raise UserError(f"{path}: no row in the loss table for this model (tried {', '.join(repr(c) for c in candidates)}); add one with its pretrain_loss")
    base = {"model": model, **losses[model]}
    base.setdefault("train_examples", 0)
    groups = _group_leaves(payload)
    configs = payload.get("configs") if isinstance(payload.get("configs"), dict) else {}
    n_samples = payload.get("n-samples") if isinstance(payload.get("n-samples"), dict) else {}

    rows, leaf_rows = [], {}
    for task, values in payload["results"].items():
        if task in groups:
            continue
        if not isinstance(values, dict):
            raise UserError(f"{path}: results[{task!r}] is not an object; the results file is malformed")
        config = configs.get(task) if isinstance(configs.get(task), dict) else {}
        output_type = config.get("output_type")
        keys = [(k, _split_metric_key(k)) for k in values]
        wanted = [(k, mf) for k, mf in keys if mf is not None and mf[0] in metrics]
        skipped.update(mf[0] for _, mf in keys if mf is not None and mf[0] not in metrics and mf[0] != "alias")
        if not wanted:
            continue
        samples_path = _samples_path(path, task)
        samples = _TaskSamples(samples_path, output_type == "multiple_choice") if samples_path else None
        choice_stats = samples.choice_statistics() if samples else None
        entry = n_samples.get(task)
        n_eval = entry.get("effective") if isinstance(entry, dict) else None
        if n_eval is not None:
            n_eval = _number(n_eval, f"{path}: n-samples[{task!r}].effective")
        if n_eval is None and samples is None:
            raise UserError(f"{path}: task {task!r} has no 'n-samples' entry and no samples_{task}_*.jsonl beside it; rerun lm_eval with --log_samples (or a harness >= 0.4.2)")

        if task in chance_overrides:
            chance = chance_overrides[task]
        elif output_type == "generate_until":
            chance = 0.0
        elif _literal_choice_count(config):
            chance = 1.0 / _literal_choice_count(config)
        elif choice_stats is not None:
            chance = choice_stats["chance"]
        else:
            raise UserError(f"{path}: cannot tell the chance accuracy of task {task!r} (output_type {output_type!r}, no samples file); pass --chance {task}=VALUE")

        shots = _shots(payload, task, path)
        for key, (metric, filter_name) in wanted:
            accuracy = _number(values[key], f"{path}: results[{task!r}][{key!r}]")
            if not 0.0 <= accuracy <= 1.0:
                raise UserError(f"{path}: results[{task!r}][{key!r}] = {accuracy} is not an accuracy in [0, 1]")
            count = n_eval
            if samples is not None:
                per_example = samples.metric_values(metric, filter_name)
                if count is not None and len(per_example) != int(count):
                    raise UserError(f"{samples.path}: {len(per_example)} samples with filter {filter_name!r} but n-samples says {int(count)}; the files do not belong together")
                mean = sum(per_example) / len(per_example)
                if abs(mean - accuracy) > 1e-6:
                    raise UserError(f"{samples.path}: mean {metric} {mean:.6f} differs from the results file's {accuracy:.6f}; the files do not belong together")
                count = len(per_example)
            if count < 1 or count != int(count):
                raise UserError(f"{path}: n-samples of task {task!r} is {count!r}, not a positive whole number")
            row = {**base, "task": task, "shots": shots, "accuracy": accuracy, "n_eval": int(count), "chance": chance, "metric": metric_label(metric, filter_name)}
            if metric == "acc" and choice_stats and "correct_prob" in choice_stats:
                row["correct_prob"] = choice_stats["correct_prob"]
                row["logprob"] = choice_stats["logprob"]
            rows.append(row)
            leaf_rows[(task, row["metric"])] = row

    for group, leaves in groups.items():
        labels = {label for (task, label) in leaf_rows if task in leaves}
        for label in sorted(labels):
            parts = [leaf_rows.get((leaf, label)) for leaf in leaves]
            if any(part is None for part in parts) or len({part["shots"] for part in parts}) != 1:
                continue
            n = sum(part["n_eval"] for part in parts)
            correct = sum(round(part["accuracy"] * part["n_eval"]) for part in parts)
            chance = sum(part["chance"] * part["n_eval"] for part in parts) / n
            rows.append({**base, "task": group, "shots": parts[0]["shots"], "accuracy": correct / n, "n_eval": n, "chance": chance, "metric": label})
    date = payload.get("date")
    return (float(date) if isinstance(date, (int, float)) and not isinstance(date, bool) else 0.0), rows


def import_lm_eval(paths: list[str], loss_table: str, *, metrics: tuple[str, ...] = ACCURACY_METRICS, chance: list[str] | None = None) -> tuple[list[dict], set]:
    """All results rows of the harness folders/files in `paths`, and the metric names skipped.
    A later results file (by its 'date') replaces an earlier one's row for the same model, task,
    shots and metric (a rerun)."""
    losses = read_loss_table(loss_table)
    overrides = parse_chance_overrides(chance)
    skipped: set = set()
    dated = []
    for path in find_results_files(paths):
        date, rows = rows_from_results_file(path, losses, metrics=metrics, chance_overrides=overrides, skipped=skipped)
        dated.append((date, str(path), rows))
    merged: dict[tuple, dict] = {}
    for _, _, rows in sorted(dated, key=lambda item: (item[0], item[1])):
        for row in rows:
            merged[(row["model"], row["task"], row["shots"], row["metric"], row.get("train_examples"), row.get("seed"))] = row
    if not merged:
        raise UserError(f"no accuracy metrics ({', '.join(metrics)}) in {', '.join(paths)}; choose metrics with --metrics")
    return list(merged.values()), skipped
