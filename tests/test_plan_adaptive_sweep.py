"""`sweep --adaptive`: the real sweep loop (done markers, results file, rounds of sub-grids) with its
job runner replaced by a simulator of a known law; `plan` chooses the runs between rounds."""

from pathlib import Path

import numpy as np
import pytest
import yaml

from emergence_jax.cli import main
from emergence_jax.laws.functions import LawSpec
from emergence_jax.laws.simulate import simulate_sweep_rows
from emergence_jax.records import read_records

REPO = Path(__file__).resolve().parents[1]
GRID_D = (250, 1000, 4000)
LOSSES = (2.43, 2.5, 2.6, 2.75, 2.95)
TRUTH = {"E0": 2.4, "shift": 0.4, "alpha": 1.5, "amplitude": 2.5}


def simulated_grid() -> dict:
    """(pretraining loss, D) -> one simulated row of the true law (D = 0: few-shot)."""
    spec = LawSpec(form="relu", law="log_power", D0=5.0, D_ref=4000.0)
    rows = simulate_sweep_rows(TRUTH, spec, losses=LOSSES, train_examples=GRID_D, subsets=1, n_eval=400, seed=3)
    return {(row["pretrain_loss"], row["train_examples"]): row for row in rows}


class SimulatedJobRunner:
    """The sweep's `JobRunner` interface; a job's rows come from the simulated grid."""

    calls: list = []

    def __init__(self, config, work_dir, output, *, progress=True):
        self.grid = simulated_grid()

    def run(self, job):
        SimulatedJobRunner.calls.append(job.id)
        D = job.train_examples if job.stage == "finetune" else 0
        row = dict(self.grid[(job.model.pretrain_loss, D)])
        return [{**row, "model": job.model.name, "task": job.task.name, "seed": job.seed, "loss_corpus": "simulated"}]

    def clean_up(self, job):
        pass


def toy_law(rows):
    """Posterior draws of the relu law scattered around the truth, standing in for a NUTS fit (the
    loop is tested here; the real fit in the slow test)."""
    from emergence_jax.laws.model import Frame
    from emergence_jax.laws.plan import FormDraws

    rng = np.random.default_rng(len(rows))
    frame = Frame.from_losses(np.array(LOSSES))
    n = 600
    latent = {
        "E0_std": frame.to_std(TRUTH["E0"] + 0.05 * rng.standard_normal(n)),
        "shift_std": TRUTH["shift"] * np.exp(0.3 * rng.standard_normal(n)) / frame.scale,
        "alpha": TRUTH["alpha"] * np.exp(0.3 * rng.standard_normal(n)),
        "amplitude_std": TRUTH["amplitude"] * np.exp(0.1 * rng.standard_normal(n)) * frame.scale,
    }
    return [FormDraws.from_latent(LawSpec(form="relu", law="log_power", D0=5.0, D_ref=4000.0), frame, latent)]


def write_config(tmp_path: Path, seeds=(0,)) -> Path:
    models = []
    for i, loss in enumerate(LOSSES):
        folder = tmp_path / f"ckpt{i}"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        models.append({"name": f"ckpt{i}@{loss}", "path": str(folder), "pretrain_loss": loss})
    config = {
        "output_dir": str(tmp_path / "out"),
        "compilation_cache_dir": "none",
        "models": models,
        "tasks": [{"name": "mmlu", "shots": [5], "train_examples": list(GRID_D), "seeds": list(seeds), "limit": 400}],
        "finetune": {"config": str(REPO / "configs" / "finetune_full.yaml")},
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def simulated_sweep(monkeypatch):
    monkeypatch.setattr("emergence_jax.sweep.runner.JobRunner", SimulatedJobRunner)
    SimulatedJobRunner.calls = []
    return SimulatedJobRunner


def test_adaptive_sweep_runs_the_first_round_then_planned_runs_within_budget(tmp_path, simulated_sweep, monkeypatch):
    monkeypatch.setattr("emergence_jax.sweep.adaptive.fit_law", lambda rows, task, settings: toy_law(rows))
    config = write_config(tmp_path)
    args = ["sweep", "--config", str(config), "--adaptive", "--runs-per-round", "3", "--adaptive-budget", "0.3", "--no-progress"]
    assert main(args) == 0
    rows = read_records(tmp_path / "out" / "results.csv")
    runs = [(row["model"], row["train_examples"]) for row in rows if row["train_examples"] > 0]
    assert len(runs) == len(set(runs)), "a run was done twice"
    assert sum(1 for row in rows if row["train_examples"] == 0) == len(LOSSES)  # every few-shot job
    assert {D for _, D in runs if D == 250} and sum(1 for _, D in runs if D == 250) >= len(LOSSES)  # round 0: smallest D everywhere
    full = len(LOSSES) * sum(GRID_D)
    spent = sum(D for _, D in runs)
    assert spent <= 0.3 * full and len(runs) > len(LOSSES)  # planned runs were added, within budget
    rounds = sorted((tmp_path / "out" / "adaptive").glob("round*.json"))
    planned = [run for r in rounds for run in yaml.safe_load(r.read_text())["runs"]]
    assert planned and all(run["train_examples"] > 250 for run in planned)  # never a run of round 0 again
    # Run again: the budget is spent (no affordable run is left), so no job runs.
    before = len(simulated_sweep.calls)
    assert main(args) == 0
    assert len(simulated_sweep.calls) == before
    assert len(read_records(tmp_path / "out" / "results.csv")) == len(rows)


def test_an_interrupted_adaptive_sweep_completes_its_started_runs(tmp_path, simulated_sweep, monkeypatch):
    """Killed inside a planned round between the two seeds of a run: the rerun finishes that run's
    missing seed first (it is not dropped, nor planned again), and every run ends with both seeds."""
    monkeypatch.setattr("emergence_jax.sweep.adaptive.fit_law", lambda rows, task, settings: toy_law(rows))
    config = write_config(tmp_path, seeds=[0, 1])
    run = simulated_sweep.run

    def interrupted(self, job):
        if job.stage == "finetune" and job.train_examples > 250 and job.seed == 1:
            raise KeyboardInterrupt
        return run(self, job)

    monkeypatch.setattr(simulated_sweep, "run", interrupted)
    args = ["sweep", "--config", str(config), "--adaptive", "--runs-per-round", "2", "--rounds", "1", "--no-progress"]
    assert main(args) == 130
    monkeypatch.setattr(simulated_sweep, "run", run)
    assert main(args) == 0
    rows = read_records(tmp_path / "out" / "results.csv")
    seeds = {}
    for row in rows:
        if row["train_examples"] > 0:
            seeds.setdefault((row["model"], row["train_examples"]), set()).add(row["seed"])
    assert len(seeds) > len(LOSSES) and all(found == {0, 1} for found in seeds.values())
    assert 2 * sum(D for _, D in seeds) <= 0.5 * 2 * len(LOSSES) * sum(GRID_D)


def test_adaptive_sweep_refuses_what_it_cannot_plan(tmp_path, simulated_sweep, capsys):
    config = write_config(tmp_path)
    assert main(["sweep", "--config", str(config), "--adaptive", "--adaptive-budget", "1.5"]) == 2
    assert "--adaptive-budget" in capsys.readouterr().err
    assert main(["sweep", "--config", str(config), "--adaptive", "--set", "stages=[pretrain_loss,fewshot]"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "finetune stage is off" in err and "\n" not in err


@pytest.mark.slow
def test_adaptive_sweep_with_the_real_fit_plans_near_the_emergence_loss(tmp_path, simulated_sweep):
    config = write_config(tmp_path)
    assert main(["sweep", "--config", str(config), "--adaptive", "--runs-per-round", "3", "--rounds", "1", "--plan-form", "relu", "--no-progress"]) == 0
    plan = yaml.safe_load((tmp_path / "out" / "adaptive" / "round1.json").read_text())
    assert len(plan["runs"]) == 3 and plan["expected_width_after"] < plan["current_width"]
