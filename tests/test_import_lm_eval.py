"""`emergence-jax import lm-eval` on fixture folders in lm-evaluation-harness 0.4.x's output format
(tests/fixtures/lm_eval: results_<date>.json + samples_<task>_<date>.jsonl per model)."""

import json
import shutil
from pathlib import Path

import pytest

from emergence_jax.cli import main
from emergence_jax.records import read_records

FIXTURES = Path(__file__).parent / "fixtures" / "lm_eval"
LOSSES = FIXTURES / "losses.csv"


def _results_file(root: Path, step: str) -> Path:
    return next((root / f"pythia-160m-step{step}").rglob("results_*.json"))


@pytest.fixture
def harness_copy(tmp_path):
    root = tmp_path / "harness"
    shutil.copytree(FIXTURES, root)
    return root


def test_import_reads_every_task_and_metric_and_fit_loads_it(tmp_path, capsys):
    out = tmp_path / "imported.csv"
    assert main(["import", "lm-eval", str(FIXTURES), "--loss-from", str(LOSSES), "--out", str(out)]) == 0
    rows = read_records(out)
    by_key = {(r["model"], r["task"], r["metric"]): r for r in rows}
    assert len(rows) == 21 and {r["model"] for r in rows} == {f"EleutherAI/pythia-160m@step{s}" for s in (13000, 71000, 143000)}

    # Values agree with the harness files themselves, recomputed here from the raw JSON.
    payload = json.loads(_results_file(FIXTURES, "71000").read_text())
    arc = by_key[("EleutherAI/pythia-160m@step71000", "arc_easy", "acc_norm")]
    assert arc["accuracy"] == payload["results"]["arc_easy"]["acc_norm,none"] and arc["n_eval"] == 20
    assert arc["shots"] == 5 and arc["chance"] == 0.25 and arc["pretrain_loss"] == 2.44 and arc["loss_corpus"] == "pile_val"
    strict = by_key[("EleutherAI/pythia-160m@step71000", "gsm8k", "exact_match:strict-match")]
    assert strict["accuracy"] == payload["results"]["gsm8k"]["exact_match,strict-match"] and strict["chance"] == 0.0

    # correct_prob is the mean softmax probability of the target among the choices' log-likelihoods.
    import numpy as np

    samples = [json.loads(line) for line in next(_results_file(FIXTURES, "71000").parent.glob("samples_arc_easy_*")).read_text().splitlines()]
    probs = [np.exp(float(s["filtered_resps"][s["target"]][0]) - np.logaddexp.reduce([float(r[0]) for r in s["filtered_resps"]])) for s in samples]
    acc = by_key[("EleutherAI/pythia-160m@step71000", "arc_easy", "acc")]
    assert acc["correct_prob"] == pytest.approx(np.mean(probs), rel=1e-12)

    # The group row pools its leaf subtasks' correct answers (MMLU chance from the literal A-D list).
    group = by_key[("EleutherAI/pythia-160m@step71000", "mmlu_stem", "acc")]
    leaves = [payload["results"][f"mmlu_{s}"]["acc,none"] * payload["n-samples"][f"mmlu_{s}"]["effective"] for s in ("abstract_algebra", "college_physics")]
    assert group["n_eval"] == 202 and group["accuracy"] == pytest.approx(sum(leaves) / 202) and group["chance"] == 0.25
    assert group["accuracy"] == pytest.approx(payload["groups"]["mmlu_stem"]["acc,none"])
    assert "mmlu_stem" in capsys.readouterr().out

    # `fit` reads it: fit's own parser and loader select one task and metric into a sweep.
    from emergence_jax.cli import build_parser
    from emergence_jax.laws.fit_command import DEFAULT_FILES
    from emergence_jax.laws.options import load_sweep

    args = build_parser("fit").parse_args(["fit", "--results", str(out), "--task", "mmlu_stem", "--metric", "acc", "--out", str(tmp_path / "fit")])
    sweep, _ = load_sweep(args, DEFAULT_FILES)
    assert sweep.n_rows == 3 and list(np.sort(sweep.loss)) == [2.37, 2.44, 2.61] and set(sweep.n_eval) == {202}


def test_rerun_replaces_older_rows(harness_copy, tmp_path):
    source = _results_file(harness_copy, "13000")
    payload = json.loads(source.read_text())
    payload["date"] += 3600
    payload["results"] = {"arc_easy": {**payload["results"]["arc_easy"], "acc_norm,none": 0.9}}
    payload["group_subtasks"] = {}
    (source.parent / "results_2024-06-03T13-00-00.000000.json").write_text(json.dumps(payload))
    out = tmp_path / "rows.jsonl"
    assert main(["import", "lm-eval", str(harness_copy), "--loss-from", str(harness_copy / "losses.csv"), "--out", str(out), "--metrics", "acc_norm", "--chance", "arc_easy=0.25"]) == 0
    rows = {r["model"]: r for r in read_records(out) if r["task"] == "arc_easy"}
    assert rows["EleutherAI/pythia-160m@step13000"]["accuracy"] == 0.9 and len(rows) == 3


def _truncate_samples(root):
    path = next(_results_file(root, "13000").parent.glob("samples_arc_easy_*"))
    path.write_text(path.read_text()[:-40])


def _drop_samples_line(root):
    path = next(_results_file(root, "13000").parent.glob("samples_arc_easy_*"))
    path.write_text("".join(path.read_text().splitlines(keepends=True)[1:]))


def _flip_sample(root):
    path = next(_results_file(root, "13000").parent.glob("samples_gsm8k_*"))
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    lines[1]["exact_match"] = 1.0 - lines[1]["exact_match"]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def _edit_results(change):
    def apply(root):
        path = _results_file(root, "13000")
        payload = json.loads(path.read_text())
        change(payload)
        path.write_text(json.dumps(payload))

    return apply


def _no_chance(payload):
    payload["configs"]["mmlu_abstract_algebra"].pop("doc_to_choice")


MALFORMED = {
    "not json": (lambda root: _results_file(root, "13000").write_text('{"results": {"arc_easy": '), "not valid JSON"),
    "no results": (_edit_results(lambda p: p.pop("results")), "'results'"),
    "metric not a number": (_edit_results(lambda p: p["results"]["arc_easy"].update({"acc,none": "N/A"})), "expected a finite number"),
    "metric out of range": (_edit_results(lambda p: p["results"]["arc_easy"].update({"acc,none": 1.5})), "not an accuracy"),
    "bad n-shot": (_edit_results(lambda p: p["n-shot"].update({"arc_easy": 2.5})), "not a whole number"),
    "n-samples disagree": (_edit_results(lambda p: p["n-samples"]["arc_easy"].update({"effective": 30})), "do not belong together"),
    "no n-samples, no samples": (_edit_results(lambda p: p["n-samples"].pop("mmlu_college_physics")), "--log_samples"),
    "unknown chance": (_edit_results(_no_chance), "--chance mmlu_abstract_algebra=VALUE"),
    "unknown model": (_edit_results(lambda p: (p.update({"model_name": "someone/else", "model_name_sanitized": "someone__else"}), p["config"].update({"model_args": "pretrained=someone/else"}))), "no row in the loss table"),
    "truncated samples": (_truncate_samples, "not valid JSON"),
    "samples count": (_drop_samples_line, "do not belong together"),
    "samples mean": (_flip_sample, "differs from the results file"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_harness_files_give_one_line_errors(case, harness_copy, tmp_path, capsys):
    breaker, expected = MALFORMED[case]
    breaker(harness_copy)
    out = tmp_path / "out.csv"
    assert main(["import", "lm-eval", str(harness_copy), "--loss-from", str(harness_copy / "losses.csv"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and expected in err, err
    assert not out.exists()


def test_bad_loss_table_and_chance_flag(tmp_path, capsys):
    table = tmp_path / "losses.csv"
    table.write_text("model,loss\nEleutherAI/pythia-160m@step13000,2.6\n")
    assert main(["import", "lm-eval", str(FIXTURES), "--loss-from", str(table), "--out", str(tmp_path / "o.csv")]) == 2
    assert "missing column 'pretrain_loss'" in capsys.readouterr().err
    assert main(["import", "lm-eval", str(FIXTURES), "--loss-from", str(LOSSES), "--out", str(tmp_path / "o.csv"), "--chance", "arc_easy"]) == 2
    assert "TASK=VALUE" in capsys.readouterr().err
