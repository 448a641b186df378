"""The model-free emergence truth: brackets a known jump, and says beyond_data on chance-level data."""

import numpy as np
import pytest

from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.options import example_path
from emergence_jax.laws.simulate import simulate_sweep_rows
from emergence_jax.laws.sweep import sweep_from_records
from emergence_jax.laws.truth import familywise_sigmas, model_free_truth
from emergence_jax.records import read_records

LOSSES = np.linspace(2.0, 3.0, 11)  # checkpoint gap 0.1


def test_jump_is_bracketed_by_the_two_checkpoints_around_it():
    spec = LawSpec(form="jump", D0=5, D_ref=8000, jump_width=0.002)
    truth = {"E0": 2.45, "amplitude": 0.5, "jump": 0.3}
    rows = simulate_sweep_rows(truth, spec, losses=LOSSES, train_examples=(), seed=1)
    result = model_free_truth(rows)
    assert result["status"] == "located"
    assert (result["low"], result["high"]) == pytest.approx((2.4, 2.5))
    assert result["first_emerged"]["model"] == "sim@loss2.4000" and result["previous"]["model"] == "sim@loss2.5000"


def test_chance_level_rows_are_beyond_data_with_the_strongest_loss_as_bound():
    spec = LawSpec(form="relu", D0=5, D_ref=8000)
    rows = simulate_sweep_rows({"E0": 1.5, "amplitude": 2.0}, spec, losses=LOSSES, seed=3)
    result = model_free_truth(sweep_from_records(rows))  # finetuned rows are ignored
    assert result["status"] == "beyond_data" and result["upper_bound"] == pytest.approx(2.0)
    assert result["low"] is None and result["high"] is None


def test_already_emerged_weakest_checkpoint_is_before_data():
    spec = LawSpec(form="relu", D0=5, D_ref=8000)
    rows = simulate_sweep_rows({"E0": 3.5, "amplitude": 0.5}, spec, losses=LOSSES, train_examples=(), seed=4)
    result = model_free_truth(rows)
    assert result["status"] == "before_data" and result["low"] == pytest.approx(3.0) and result["high"] is None


@pytest.mark.parametrize("name", ["pythia_mmlu_negative_control.csv", "gadre_mmlu0shot_negative_control.csv"])
def test_published_mmlu_negative_controls_are_beyond_data(name):
    result = model_free_truth(read_records([str(example_path(name))]))
    assert result["status"] == "beyond_data"
    # significance alone would call them emerged: some checkpoint is > 3 binomial SEs above chance
    assert model_free_truth(read_records([str(example_path(name))]), min_excess=0.0)["status"] != "beyond_data"


def test_olmo2_13b_mmlu_mc_bracket():
    rows = [r for r in read_records([str(example_path("olmo2_fewshot.csv"))]) if r["task"] == "mmlu_mc" and r["model"].startswith("olmo2_13b@")]
    result = model_free_truth(rows)
    assert result["status"] == "located" and (result["low"], result["high"]) == pytest.approx((2.6648, 2.6924))


def test_familywise_threshold():
    assert familywise_sigmas(3.0, 1) == pytest.approx(3.0)
    assert familywise_sigmas(3.0, 100) > 4.0
