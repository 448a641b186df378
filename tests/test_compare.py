"""`emergence-jax compare`: the probability against a brute-force reference, and on two fits of
simulated families 0.2 nats apart (written by `emergence-jax fit`)."""

import json
import shutil

import numpy as np
import pytest

from emergence_jax.cli import main
from emergence_jax.laws.compare import compare_draws, probability_greater, simulated_family_rows
from emergence_jax.records import write_records

FAST = ["--form", "relu", "--likelihood", "binomial", "--chains", "2", "--warmup", "200", "--samples", "200", "--no-progress"]


def test_probability_matches_all_pairs_and_the_normal_formula():
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    a, b = rng.normal(2.5, 0.05, 700), np.round(rng.normal(2.45, 0.08, 900), 2)  # rounding makes ties
    brute = np.mean(a[:, None] > b[None, :]) + 0.5 * np.mean(a[:, None] == b[None, :])
    assert probability_greater(a, b) == pytest.approx(brute, abs=1e-12)
    assert probability_greater(b, b) == pytest.approx(0.5)
    a, b = rng.normal(2.5, 0.05, 20000), rng.normal(2.45, 0.08, 20000)
    result = compare_draws(a, b)
    assert result["p_a_before_b"] == pytest.approx(norm.cdf(0.05 / np.hypot(0.05, 0.08)), abs=0.01)
    spread = np.hypot(0.05, 0.08)
    assert result["difference"]["median"] == pytest.approx(0.05, abs=0.005)
    assert result["difference"]["q95"] - result["difference"]["q05"] == pytest.approx(2 * 1.645 * spread, rel=0.03)


@pytest.fixture(scope="module")
def two_fits(tmp_path_factory):
    """Fits of family A (true E0 2.5 nats) and family B (2.3 nats): A emerges 0.2 nats earlier."""
    root = tmp_path_factory.mktemp("compare")
    dirs = {}
    for name, E0, seed in (("a", 2.5, 11), ("b", 2.3, 12)):
        results = root / f"{name}.csv"
        write_records(results, simulated_family_rows(E0, seed=seed, corpus="sim_heldout"))
        dirs[name] = root / f"fit_{name}"
        assert main(["fit", "--results", str(results), "--out", str(dirs[name]), *FAST]) == 0
    return dirs


def test_families_apart_are_ordered_with_confidence(two_fits, capsys):
    assert main(["compare", "--fits", str(two_fits["a"]), str(two_fits["b"]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["p_a_before_b"] >= 0.95
    diff = result["difference"]
    assert diff["q05"] <= diff["median"] <= diff["q95"] and 0.1 < diff["median"] < 0.3
    assert result["loss_corpus"] == ["sim_heldout"] and result["unit"] == "nats"
    assert main(["compare", "--fits", str(two_fits["b"]), str(two_fits["a"])]) == 0
    out = capsys.readouterr().out
    p_reverse = float(out.split("P(A emerges before B, i.e. at a higher loss) = ")[1].split()[0])
    assert p_reverse <= 0.05 and p_reverse == pytest.approx(1 - result["p_a_before_b"], abs=1e-3)


def _with_fit_json(src, dst, change):
    shutil.copytree(src, dst)
    path = dst / "fit.json"
    payload = json.loads(path.read_text())
    change(payload)
    path.write_text(json.dumps(payload))
    return dst


def test_different_corpora_or_units_are_refused(two_fits, tmp_path, capsys):
    other_corpus = _with_fit_json(two_fits["b"], tmp_path / "c4", lambda p: p.update(loss_corpus="c4_en"))
    assert main(["compare", "--fits", str(two_fits["a"]), str(other_corpus)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "not comparable" in err
    bits = _with_fit_json(two_fits["b"], tmp_path / "bits", lambda p: p.update(loss_unit="bits"))
    assert main(["compare", "--fits", str(two_fits["a"]), str(bits)]) == 2
    assert "bits" in capsys.readouterr().err
    assert main(["compare", "--fits", str(two_fits["a"]), str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err
