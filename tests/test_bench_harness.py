"""The bench harness: warm-up then interleaved rounds (alternating which side goes first), medians,
ranges and ratios computed from the per-round times, loaded-machine warnings, the JSON shape, and
the README table made from that JSON; the demo bench's stage times read from the demo's records."""

import argparse
import json

import pytest

from emergence_jax.bench import demo as demo_bench
from emergence_jax.bench import harness, table
from emergence_jax.errors import UserError


def _bench(rounds=5, json_out=None, no_reference=False):
    return harness.Bench("unit", argparse.Namespace(rounds=rounds, threads=None, json=json_out, no_reference=no_reference))


class Clock:
    """A fake perf_counter: each side's call advances time by the next of its durations."""

    def __init__(self, monkeypatch):
        self.now = 0.0
        self.calls = []
        monkeypatch.setattr(harness.time, "perf_counter", lambda: self.now)

    def side(self, name, durations):
        durations = iter(durations)

        def call():
            self.calls.append(name)
            self.now += next(durations)

        return call


def test_rounds_are_interleaved_after_a_warm_up_and_summarised_by_medians(monkeypatch):
    clock = Clock(monkeypatch)
    bench = _bench(rounds=5)
    ours = clock.side("ours", [3.0, 1.0, 2.0, 1.0, 4.0, 1.0])  # first call: 3 s (compilation)
    reference = clock.side("ref", [9.0, 2.0, 4.0, 2.0, 2.0, 8.0])
    m = bench.compare("forward", "tokens/s", 100.0, ours, reference)
    assert clock.calls == ["ours", "ref", "ours", "ref", "ref", "ours", "ours", "ref", "ref", "ours", "ours", "ref"]
    assert m.rounds == 5
    assert m.ours == pytest.approx(100.0) and m.ours_range == pytest.approx((25.0, 100.0))  # rates 100, 50, 100, 25, 100
    assert m.reference == pytest.approx(50.0) and m.reference_range == pytest.approx((12.5, 50.0))  # 50, 25, 50, 50, 12.5
    assert m.ratio == pytest.approx(2.0)
    assert m.compile_s == pytest.approx(2.0)  # 3 s first call - 1 s median
    row = m.to_json()
    assert {k: row[k] for k in ("name", "ours", "reference", "unit", "ratio")} == {
        "name": "forward", "ours": pytest.approx(100.0), "reference": pytest.approx(50.0), "unit": "tokens/s", "ratio": pytest.approx(2.0)}


def test_times_ratio_is_reference_over_ours_and_reference_work_can_differ(monkeypatch):
    clock = Clock(monkeypatch)
    bench = _bench(rounds=3)
    m = bench.compare("wall", "s", 1.0, clock.side("ours", [5, 2, 2, 2]), clock.side("ref", [5, 4, 4, 4]))
    assert (m.ours, m.reference, m.ratio) == (pytest.approx(2.0), pytest.approx(4.0), pytest.approx(2.0))
    m = bench.compare("rate", "tokens/s", 64.0, clock.side("ours", [1, 1, 1, 1]), clock.side("ref", [1, 1, 1, 1]), reference_work=16.0)
    assert m.ratio == pytest.approx(4.0)


def test_no_reference_times_ours_only(monkeypatch):
    clock = Clock(monkeypatch)
    bench = _bench(rounds=2, no_reference=True)
    m = bench.compare("x", "tokens/s", 10.0, clock.side("ours", [1, 1, 1]), clock.side("ref", [1, 1, 1]))
    assert clock.calls == ["ours"] * 3 and m.reference is None and m.ratio is None


def test_noisy_rounds_and_load_warn(monkeypatch, capsys):
    monkeypatch.setattr(harness.os, "getloadavg", lambda: (50.0, 50.0, 50.0))
    clock = Clock(monkeypatch)
    bench = _bench(rounds=3)
    bench.compare("x", "tokens/s", 1.0, clock.side("ours", [1, 1, 2, 1]), clock.side("ref", [1, 1, 1, 1]))
    warnings = bench.environment()["warnings"]
    assert any("looks loaded: 1-minute load average 50.00" in w for w in warnings)
    assert any(w.startswith("x: ours rounds spread 50%") for w in warnings)  # rates 1, 0.5, 1
    assert not any("reference rounds" in w for w in warnings)
    assert "warning:" in capsys.readouterr().err


def test_json_output_and_the_readme_table(tmp_path, monkeypatch, capsys):
    clock = Clock(monkeypatch)
    path = tmp_path / "bench.json"
    bench = _bench(rounds=3, json_out=str(path))
    bench.compare("forward", "tokens/s", 100.0, clock.side("ours", [1, 1, 1, 1]), clock.side("ref", [2, 2, 2, 2]))
    bench.compare("demo", "s", 1.0, clock.side("ours", [1, 3, 3, 3]))
    bench.report()
    capsys.readouterr()
    document = json.loads(path.read_text())
    assert document["bench"] == "unit" and [m["name"] for m in document["measurements"]] == ["forward", "demo"]
    assert {"cpu", "cpus", "threads", "load_average_before", "versions", "warnings"} <= set(document["environment"])
    combined = tmp_path / "all.json"
    combined.write_text(json.dumps({"benches": [document], "environment": document["environment"]}))
    assert table.main([str(combined)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2] == "| `bench unit` | forward | tokens/s | 100 (100–100) | 50 (50–50) | 2.00× |"
    assert lines[3] == "| `bench unit` | demo | s | 3 (3–3) | – | – |"
    assert any(line.startswith("Measured on ") and f"{document['environment']['cpus']} CPUs" in line for line in lines)


def test_table_refuses_other_json(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"rows": []}')
    with pytest.raises(UserError, match="not bench JSON"):
        table.main([str(path)])


def test_demo_stage_times_come_from_the_demo_records(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    log = "\n".join([
        "[demo] rung0: pretrained in 12 s", "[demo] rung1: pretrained in 30 s", "[demo] rung0: 4 checkpoints scored",
        "[demo] r0@100 (loss 2.1, few-shot 0.2) finetuned in 7 s: D=8/0: 0.3", "[demo] fitted in 40 s (max R-hat 1.01)",
    ])
    assert demo_bench.stage_seconds(tmp_path, log) == {"pretrain": 42.0, "finetune": 7.0, "fit": 40.0}
    (tmp_path / "summary.json").write_text('{"stage_seconds": {"pretrain": 41.5, "fewshot": 3.0}}')
    assert demo_bench.stage_seconds(tmp_path, log) == {"pretrain": 41.5, "fewshot": 3.0}
