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
