"""The bundled sweep of one default run of the demo (`emergence_jax/examples/demo_sweep.csv`):
the properties the examples README claims for it, recomputed from its rows."""

import re
from pathlib import Path

from emergence_jax.demo.analysis import chance_z, onset_per_amount, pre_emergence_models
from emergence_jax.demo.settings import DEFAULT
from emergence_jax.laws.options import example_path
from emergence_jax.laws.sweep import sweep_from_records
from emergence_jax.records import read_records


def _rows():
    return read_records(example_path("demo_sweep.csv"))


def test_bundled_demo_sweep_has_real_emergence_and_only_pre_emergence_checkpoints_finetuned():
    rows = _rows()
    fewshot = [r for r in rows if r["train_examples"] == 0]
    assert len(fewshot) == sum(len(rung.checkpoint_steps) for rung in DEFAULT.rungs)  # the default ladder
    finetuned = {r["model"] for r in rows if r["train_examples"] > 0}
    pre = set()
    for rung in DEFAULT.rungs:
        pre |= set(pre_emergence_models([r for r in fewshot if r["rung"] == rung.name]))
    assert finetuned and finetuned <= pre
    weakest = max(fewshot, key=lambda r: r["pretrain_loss"])
    strongest = min(fewshot, key=lambda r: r["pretrain_loss"])
    assert chance_z(weakest["accuracy"], 0.25, weakest["n_eval"]) < 2
    assert strongest["accuracy"] > 0.95
    per_run = {(r["model"], r["train_examples"]) for r in rows if r["train_examples"] > 0}
    assert len(per_run) * DEFAULT.subsets == len(rows) - len(fewshot)


def test_bundled_demo_sweep_onset_moves_to_higher_loss_with_D():
    sweep = sweep_from_records(_rows(), task="kv_recall", metric="accuracy")
    onsets = onset_per_amount(sweep)
    amounts = sorted(onsets)
    assert {0, max(DEFAULT.amounts)} <= set(amounts) <= {0, *DEFAULT.amounts}
    values = [onsets[D]["loss"] for D in amounts]
    assert all(b >= a for a, b in zip(values, values[1:])), values
    assert onsets[max(amounts)]["loss"] > onsets[0]["loss"] + 0.05  # README: 0.091 nats


def test_bundled_demo_sweep_finetuned_checkpoints_lie_within_the_fit_horizon():
    """Every finetuned checkpoint lies within the default fit horizon, and the family needs at least
    twice the strongest one's FLOPs to reach the model-free truth (README: flops_ahead 2.16)."""
    from emergence_jax.laws.backtest import flops_ahead
    from emergence_jax.laws.truth import model_free_truth

    rows = _rows()
    finetuned = {r["model"]: r for r in rows if r["train_examples"] > 0}
    steps = {rung.name: rung.steps for rung in DEFAULT.rungs}
    assert all(r["step"] <= DEFAULT.fit_fraction * steps[r["rung"]] for r in finetuned.values())
    sweep = sweep_from_records(rows, task="kv_recall", metric="accuracy")
    truth = model_free_truth(sweep)
    assert truth["status"] == "located"
    assert flops_ahead(sweep, sorted(finetuned), truth["midpoint"]) >= 2.0


def test_examples_readme_command_selects_exactly_the_finetuned_checkpoints():
    text = (Path(example_path("demo_sweep.csv")).parent / "README.md").read_text()
    pattern = re.search(r"--models '([^']+)'", text[text.index("demo_sweep.csv"):]).group(1)
    rows = _rows()
    selected = {r["model"] for r in rows if re.search(pattern, r["model"])}
    assert selected == {r["model"] for r in rows if r["train_examples"] > 0}
