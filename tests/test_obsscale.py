"""The observational scaling baseline: PCA against an eigendecomposition reference, recovery of a
known sigmoid law across families, and the backtest on the bundled public-model table."""

import json

import numpy as np
import pytest

from emergence_jax.cli import main
from emergence_jax.errors import UserError
from emergence_jax.obsscale import ModelTable, _pca_transform, backtest


def _synthetic(seed=0, n_families=6, per_family=8):
    """Families of models whose capability c grows with log10 FLOPs at a family-specific offset;
    benchmarks are noisy linear read-outs of c; the target is 0.25 + 0.75·σ(4(c − 1))."""
    rng = np.random.default_rng(seed)
    models, families, flops, capability = [], [], [], []
    for f in range(n_families):
        offset = rng.normal(0, 0.5)
        for i, lf in enumerate(np.linspace(20, 24, per_family)):
            models.append(f"fam{f}@{i}")
            families.append(f"fam{f}")
            flops.append(10**lf)
            capability.append(0.8 * (lf - 22) + offset)
    c = np.array(capability)
    scores = {f"bench{j}": np.clip(0.5 + 0.1 * (j + 1) * c + rng.normal(0, 0.01, c.size), 0, 1) for j in range(5)}
    scores["target"] = 0.25 + 0.75 / (1 + np.exp(-4 * (c - 1)))
    return ModelTable(np.array(models), np.array(families), np.array(flops), scores, np.full(c.size, np.nan))


def test_pca_matches_the_covariance_eigenvectors():
    table = _synthetic()
    names = [f"bench{j}" for j in range(5)]
    transform, explained = _pca_transform(table, names, 2)
    X = np.column_stack([table.scores[n] for n in names])
    Z = (X - X.mean(0)) / X.std(0)
    values, vectors = np.linalg.eigh(np.cov(Z, rowvar=False, bias=True))
    order = np.argsort(values)[::-1]
    reference = Z @ vectors[:, order[:2]]
    ours = transform(table)
    for k in range(2):  # components are defined up to sign
        assert min(np.abs(ours[:, k] - reference[:, k]).max(), np.abs(ours[:, k] + reference[:, k]).max()) < 1e-8
    assert explained == pytest.approx(values[order[:2]] / values.sum())


@pytest.mark.parametrize("measure", ["pca", "flops"])
def test_backtest_recovers_a_known_sigmoid_law(measure):
    table = _synthetic()
    result = backtest(table, "target", measure=measure, cutoff=10**22.9, chance=0.25, benchmarks=[f"bench{j}" for j in range(5)], components=1)
    assert result["n_fit"] + result["n_heldout"] == 48 and result["n_heldout"] >= 12
    assert result["heldout_mae"] < 0.05, result["heldout_mae"]
    # a wrong chance (ceiling and floor off) must do visibly worse: the check can fail
    wrong = backtest(table, "target", measure=measure, cutoff=10**22.9, chance=0.6, benchmarks=[f"bench{j}" for j in range(5)], components=1)
    assert wrong["heldout_mae"] > 2 * result["heldout_mae"]


def test_bad_target_and_cutoff_are_user_errors():
    table = _synthetic()
    with pytest.raises(UserError, match="not a column"):
        backtest(table, "nope")
    with pytest.raises(UserError, match="FLOPs cutoff"):
        backtest(table, "target", measure="flops", cutoff=1e30)


def test_cli_on_bundled_public_models(tmp_path, capsys):
    out = tmp_path / "obs.json"
    assert main(["obsscale", "--target", "bb_arithmetic_3da_2_acc", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["measure"] == "pca" and "bb_arithmetic_3da_2_acc" not in result["benchmarks"]
    assert result["n_fit"] > 20 and result["n_heldout"] > 10
    assert all(p["flops"] > 8.4e22 for p in result["predictions"])
    assert 0 <= result["heldout_mae"] < 0.1  # measured 0.032 (README)
    assert "held-out accuracy error" in capsys.readouterr().out
    assert main(["obsscale", "--target", "bb_arithmetic_3da_2_acc", "--benchmarks", "nope"]) == 2
