"""`emergence-jax compare`: the probability against a brute-force reference, on fit folders built
from known draws, and (slow: two NUTS fits, ~3.5 min on 2 loaded cores) on two fits of simulated
families 0.2 nats apart written by `emergence-jax fit`."""

import json
import shutil

import numpy as np
import pytest

from emergence_jax.cli import main
from emergence_jax.laws.compare import STUDY_FAMILY, compare_draws, probability_greater, simulated_family_rows
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


def fit_dir(path, E0_draws, **fit_json):
    """A folder as `emergence-jax fit --out` writes it, for what `compare` reads: posterior.nc with
    E0 [chain, draw] (and E0_combined, the mixture over forms, when given) and fit.json."""
    import arviz as az

    path.mkdir()
    posterior = {name: np.asarray(value).reshape(2, -1) for name, value in E0_draws.items()}
    az.from_dict(posterior=posterior).to_netcdf(str(path / "posterior.nc"))
    (path / "fit.json").write_text(json.dumps({"loss_unit": "nats", **fit_json}))
    return path


def test_compare_reads_the_mixture_over_forms_and_refuses_other_corpora(tmp_path, capsys):
    rng = np.random.default_rng(3)
    a = fit_dir(tmp_path / "a", {"E0": rng.normal(2.2, 0.02, 1000), "E0_combined": rng.normal(2.5, 0.05, 1000)}, loss_corpus="c4_val")
    b = fit_dir(tmp_path / "b", {"E0": rng.normal(2.45, 0.05, 1000)}, loss_corpus="c4_val")
    assert main(["compare", "--fits", str(a), str(b), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    # E0_combined (what fit.json summarises), not the top form's E0: 2.5 vs 2.45, sd 0.05 each
    from scipy.stats import norm

    assert result["p_a_before_b"] == pytest.approx(norm.cdf(0.05 / np.hypot(0.05, 0.05)), abs=0.03)
    other = fit_dir(tmp_path / "c", {"E0": rng.normal(2.45, 0.05, 1000)}, loss_corpus="lambada")
    assert main(["compare", "--fits", str(a), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "not comparable" in err


@pytest.fixture(scope="module")
def two_fits(tmp_path_factory):
    """Fits of family A (true E0 2.5 nats) and family B (2.3 nats): A emerges 0.2 nats earlier, on
    the `study compare` grid (8 checkpoints × 6 D; the 6 × 3 grid gave P = 0.93 for these seeds)."""
    root = tmp_path_factory.mktemp("compare")
    dirs = {}
    for name, E0, seed in (("a", 2.5, 11), ("b", 2.3, 12)):
        results = root / f"{name}.csv"
        write_records(results, simulated_family_rows(E0, seed=seed, corpus="sim_heldout", design=STUDY_FAMILY))
        dirs[name] = root / f"fit_{name}"
        assert main(["fit", "--results", str(results), "--out", str(dirs[name]), *FAST]) == 0
        assert json.loads((dirs[name] / "fit.json").read_text())["loss_corpus"] == "sim_heldout"  # from the rows' loss_corpus
    return dirs


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_compare_study_one_repeat():
    """One repeat of `emergence-jax study compare` at reduced sampler settings (four NUTS fits)."""
    from emergence_jax.laws.compare import compare_study

    result = compare_study(1, chains=2, warmup=150, samples=150, seed=0)
    (repeat,) = result["repeats"]
    assert repeat["apart_0.2_nats"] >= 0.95 and result["apart_0.2_nats"]["share_p_ge_0.95"] == 1.0
    assert 0.05 < repeat["identical"] < 0.95
    assert all(fit["q05"] <= fit["median"] <= fit["q95"] for fit in repeat["E0"].values())
