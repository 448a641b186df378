"""The sweep's output folder: rows appended through the bucket path (staged locally, written whole)
end up identical to a local output's; repeats are kept once; conflicts change nothing."""

import pytest

from emergence_jax.errors import UserError
from emergence_jax.sweep import storage
from emergence_jax.sweep.storage import SweepOutput

ROW = {"model": "m@1", "pretrain_loss": 2.5, "train_examples": 0, "shots": 5, "accuracy": 0.3, "n_eval": 10, "chance": 0.25, "task": "mmlu", "seed": 0, "metric": "accuracy"}


def _rows(**changes):
    return [{**ROW, **changes}]


@pytest.mark.parametrize("remote", [False, True])
def test_appends_are_idempotent_and_conflicts_leave_the_file_alone(tmp_path, monkeypatch, remote):
    monkeypatch.setattr(storage, "is_remote", lambda path: remote)
    output = SweepOutput(str(tmp_path / "out"), "results.csv", scratch=tmp_path / "scratch")
    assert output.remote is remote
    output.append_rows(_rows())
    output.append_rows(_rows(train_examples=100, accuracy=0.6))
    output.append_rows(_rows())  # a job redone after a kill between appending and its done marker
    text = (tmp_path / "out" / "results.csv").read_text()
    assert text.splitlines()[1:] == [
        'm@1,2.5,0,5,0.3,10,0.25,mmlu,0,"accuracy"',  # records quote the last field (a cut row is then detectable)
        'm@1,2.5,100,5,0.6,10,0.25,mmlu,0,"accuracy"',
    ]
    with pytest.raises(UserError, match="duplicate of the row"):
        output.append_rows(_rows(accuracy=0.4))
    assert (tmp_path / "out" / "results.csv").read_text() == text

    assert not output.is_done("fewshot/m@1/mmlu/5shot")
    output.mark_done("fewshot/m@1/mmlu/5shot", {"rows": 1})
    assert output.is_done("fewshot/m@1/mmlu/5shot")
    output.write_json(output.loss_file("m@1"), {"pretrain_loss": 2.5})
    assert output.read_json(output.loss_file("m@1")) == {"pretrain_loss": 2.5}
    assert not [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
