"""`bench calibration --out FILE` survives a kill: finished sweeps are journalled as they end and
a rerun fits only the rest (the fit itself is replaced by a cheap stand-in here)."""

import argparse
import json

import pytest

from emergence_jax.bench import calibration as bench_calibration
from emergence_jax.errors import UserError
from emergence_jax.laws import calibration


def _args(out, **overrides):
    values = {"per_cell": 2, "amounts": ["small"], "chains": 2, "warmup": 10, "samples": 10, "out": str(out)}
    return argparse.Namespace(**{**values, **overrides})


def _stand_in(calls, stop_after=None):
    def run_sweep(cell, seed, sampler):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append((cell.label, seed))
        return {"cell": cell.label, "seed": seed, "truth": 2.3, "median": 2.3 + seed * 1e-6, "q05": 2.2, "q95": 2.4,
                "covered": True, "error": seed * 1e-6, "status": "located", "weights": {"relu": 1.0}, "r_hat_max": 1.0,
                "divergence_fraction": 0.0, "seconds": 1.0}
    return run_sweep


def test_an_interrupted_study_resumes_without_refitting(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study.json"
    first = []
    monkeypatch.setattr(calibration, "run_sweep", _stand_in(first, stop_after=7))
    with pytest.raises(KeyboardInterrupt):
        bench_calibration.run(_args(out))
    journal = tmp_path / "study.json.partial.jsonl"
    assert len(first) == 7 and not out.exists()
    assert len(journal.read_text().splitlines()) == 1 + 7
    with journal.open("a") as handle:  # a kill in the middle of an append leaves half a line (here cut after a nested object)
        handle.write('{"cell": "relu/none/nats/small", "weights": {"relu": 1.0}')

    second = []
    monkeypatch.setattr(calibration, "run_sweep", _stand_in(second))
    with pytest.warns(UserWarning, match="removed an incomplete last line"):
        assert bench_calibration.run(_args(out)) == 0
    assert "resuming: 7 sweeps" in capsys.readouterr().out
    assert len(second) == 36 - 7 and not set(first) & set(second)
    study = json.loads(out.read_text())
    assert study["summary"]["sweeps"] == 36 and len({(r["cell"], r["seed"]) for r in study["results"]}) == 36
    assert not journal.exists()


def test_a_journal_from_other_settings_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "study.json"
    monkeypatch.setattr(calibration, "run_sweep", _stand_in([], stop_after=3))
    with pytest.raises(KeyboardInterrupt):
        bench_calibration.run(_args(out))
    with pytest.raises(UserError, match="study.json.partial.jsonl: written by a run with other settings"):
        bench_calibration.run(_args(out, samples=20))
