"""`emergence-jax demo --out` refuses folders it must not write into, with exit code 2 and one line."""

import json

from emergence_jax.cli import main


def _fails_with(capsys, out, message):
    assert main(["demo", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    _fails_with(capsys, target, "must be a folder")
    assert target.read_text() == "keep me"


def test_non_empty_folder_without_a_demo_run_is_refused(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("keep me")
    _fails_with(capsys, tmp_path, "holds no demo run")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_run_made_with_other_settings_is_refused(tmp_path, capsys):
    (tmp_path / "settings.json").write_text(json.dumps({"name": "something else"}))
    _fails_with(capsys, tmp_path, "other settings")


def test_seeds_out_of_range_is_refused(tmp_path, capsys):
    assert main(["demo", "--quick", "--seeds", "0", "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "--seeds" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "rep").exists()


def test_seeds_into_a_foreign_folder_is_refused(tmp_path, capsys):
    (tmp_path / "thesis.tex").write_text("keep me")
    assert main(["demo", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 2
    assert "holds no demo replication" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]


def test_replication_row_needs_all_three_criteria():
    from emergence_jax.demo.command import replication_row

    def summary(error, inside, ahead):
        return {"error_nats": error, "within_interval": inside, "flops_ahead": ahead, "true_fewshot_emergence_loss": 2.4,
                "predicted_fewshot_emergence_loss": {"median": 2.4 + (error or 0)}, "model_free_truth": {"low": 2.39, "high": 2.41}}

    assert replication_row(0, summary(0.05, True, 2.0))["meets_all"]
    assert not replication_row(0, summary(0.051, True, 3.0))["meets_all"]
    assert not replication_row(0, summary(0.01, False, 3.0))["meets_all"]
    assert not replication_row(0, summary(0.01, True, 1.99))["meets_all"]
    assert not replication_row(0, summary(None, False, None))["meets_all"]


def test_with_seed_changes_world_and_initialisation_only():
    import dataclasses

    from emergence_jax.demo.settings import QUICK, with_seed

    other = with_seed(QUICK, 2)
    assert other.world.seed == 2 and {r.seed for r in other.rungs} == {2}
    assert dataclasses.replace(other, world=QUICK.world, rungs=QUICK.rungs) == QUICK
    assert other.fingerprint() != QUICK.fingerprint()


def test_stage_clock_adds_the_time_of_a_resumed_run_to_the_killed_one(tmp_path):
    import time

    from emergence_jax.demo.command import StageClock

    clock = StageClock(tmp_path)
    with clock.stage("pretrain"):
        time.sleep(0.05)
    resumed = StageClock(tmp_path)  # a new process after a kill reads what the first one spent
    with resumed.stage("pretrain"):
        time.sleep(0.05)
    with resumed.stage("fit"):
        pass
    assert resumed.wall["pretrain"] >= 0.1 and set(resumed.wall) == set(resumed.cpu) == {"pretrain", "fit"}
    assert StageClock(tmp_path).wall == resumed.wall
    assert StageClock(tmp_path).total() >= sum(resumed.wall.values())
