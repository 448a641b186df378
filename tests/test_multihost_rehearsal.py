"""The pod path rehearsed on one machine: 2 JAX processes on localhost (`jax.distributed` with a
local coordinator, 4 fake CPU devices each, gloo collectives) run a sweep of the paper configs'
shape on a tiny checkpoint — pretraining loss, few-shot evaluation, finetuning with Orbax
checkpoints, export, evaluation of the finetuned model — on one 8-device mesh spanning both.

- Process 1 is killed mid-finetuning (right after an Orbax checkpoint) and both are restarted: the
  run resumes from that checkpoint, and the results rows equal the 1-process (8 devices) run's
  (accuracies, counts, losses exactly; the finetuned rows' brier / probability / log-probability to
  1e-6 relative); the exported weights agree to float32 rounding (gloo's cross-process reductions
  add in another order).
- PassUntil and GSM8K evaluation on 2 processes: each process generates only its share of every
  batch, and the states / results rows equal the 1-process run's.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import load_file

pytest.importorskip("tokenizers")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from emergence_jax.records import read_records  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from test_sweep_resume import tiny_model  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"
TEXT = [
    "Question: Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer: B",
    "The cat sat on the mat. The dog sat on the log. Numbers: 1, 2, 3, 10, 100.",
]
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from emergence_jax.data.builders import prepare_dataset

    root = tmp_path_factory.mktemp("rehearsal")
    model = tiny_model(root / "tiny_a", seed=0)
    prepare_dataset("mmlu", data_dir=root / "tfds", manual_dir=FIXTURES / "mmlu")
    corpus = root / "heldout.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXT))
    recipe = root / "finetune.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"compute_dtype": "float32"},
        "data": {"max_length": 256, "min_steps": 6},
        "optim": {"batch_size": 8, "learning_rate": 1e-3},
        "checkpoint": {"every_steps": 2, "keep": 2, "export_merged": True},
        "log_every_steps": 1,
    }))
    return root, model, corpus, recipe


def sweep_config(path: Path, output: Path, inputs) -> Path:
    root, model, corpus, recipe = inputs
    path.write_text(yaml.safe_dump({
        "output_dir": str(output),
        "data_dir": str(root / "tfds"),
        "compilation_cache_dir": str(root / "jax_cache"),  # shared: restarts skip compilation, as on a pod
        "models": [{"name": "tiny_a@step1", "path": str(model), "params": 1000.0}],
        "tasks": [{"name": "mmlu", "shots": [1], "train_examples": [4], "seeds": [0], "finetuned_shots": [0], "limit": 3}],
        "loss_corpus": {"paths": [str(corpus)], "sequence_length": 17},
        "evaluate": {"batch_size": 4, "compute_dtype": "float32"},
        "finetune": {"config": str(recipe), "keep_outputs": True},
    }))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(config: Path, *, processes: int) -> list[subprocess.Popen]:
    base = {**os.environ, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, "-m", "emergence_jax.cli", "sweep", "--config", str(config), "--no-progress"]
    if processes == 1:
        env = {**base, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
        return [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    port = free_port()
    started = []
    for process_id in range(processes):
        env = {
            **base,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={8 // processes}",
            "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
            "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
            "JAX_NUM_PROCESSES": str(processes),
            "JAX_PROCESS_ID": str(process_id),
        }
        started.append(subprocess.Popen([*command, "--set", "distributed=true"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return started


def finish(processes: list[subprocess.Popen]) -> list[str]:
    logs = []
    for process in processes:
        try:
            log, _ = process.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            raise
        logs.append(log)
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log[-3000:]
    return logs


def kill_when(processes: list[subprocess.Popen], condition) -> bool:
    """SIGKILL process 1 as soon as `condition()` holds, then the rest (a scheduler restarting the
    slice); False if they ended first."""
    deadline = time.monotonic() + TIMEOUT_S
    while all(p.poll() is None for p in processes) and time.monotonic() < deadline:
        if condition():
            processes[1].send_signal(signal.SIGKILL)
            processes[1].wait()
            for process in processes:
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                process.communicate()
            return True
        time.sleep(0.02)
    for process in processes:
        process.kill()
        process.communicate()
    return False


# Probability-valued extras of finetuned rows come from weights that gloo's cross-process gradient
# reductions round differently (they agree to ~1e-7 relative); everything else must be identical.
ROUNDED_COLUMNS = ("brier", "correct_prob", "logprob")


def assert_same_rows(rows, reference):
    assert len(rows) == len(reference)
    for row, expected in zip(rows, reference):
        assert row.keys() == expected.keys()
        for key, value in expected.items():
            if key in ROUNDED_COLUMNS and value not in (None, ""):
                assert float(row[key]) == pytest.approx(float(value), rel=1e-6, abs=1e-9), (key, row, expected)
            else:
                assert row[key] == value, (key, row, expected)


def test_two_processes_killed_and_restarted_equal_one_process(inputs, tmp_path):
    began = time.monotonic()
    finish(start(sweep_config(tmp_path / "one.yaml", tmp_path / "one", inputs), processes=1))
    one_seconds = time.monotonic() - began
    reference = read_records(tmp_path / "one" / "results.csv")
    # pretraining loss -> few-shot (2 metrics) and finetuned (2 metrics) rows, all with the loss.
    assert [(r["train_examples"], r["metric"]) for r in reference] == [
        (0, "accuracy"), (0, "length_normalized_accuracy"), (4, "accuracy"), (4, "length_normalized_accuracy")
    ]
    assert all(r["loss_corpus"] and 3.0 < r["pretrain_loss"] < 7.0 for r in reference)

    # 2 processes; process 1 is killed right after the finetuning run's step-2 checkpoint, then
    # both are restarted (as a scheduler restarts a pod slice).
    config = sweep_config(tmp_path / "two.yaml", tmp_path / "two", inputs)
    job = Path("work/jobs/finetune/tiny_a@step1/mmlu/D4_seed0/run")
    run_dir = tmp_path / "two" / job
    began = time.monotonic()
    assert kill_when(start(config, processes=2), lambda: (run_dir / "checkpoints" / "2").is_dir())
    killed_seconds = time.monotonic() - began
    assert (tmp_path / "two" / "done" / "fewshot").is_dir() and not (tmp_path / "two" / "done" / "finetune").exists()
    began = time.monotonic()
    logs = finish(start(config, processes=2))
    restart_seconds = time.monotonic() - began

    assert_same_rows(read_records(tmp_path / "two" / "results.csv"), reference)
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps.count(1) == steps.count(2) == 1 and steps[-1] == 6, steps  # resumed after step 2, not restarted
    assert "now:" not in logs[1]  # only process 0 prints the progress table
    loss_one, loss_two = (json.loads((tmp_path / run / "pretrain_loss" / "tiny_a@step1.json").read_text()) for run in ("one", "two"))
    assert loss_one == loss_two
    for name in ("config.json", "tokenizer.json"):
        assert (tmp_path / "two" / job / "model" / name).read_bytes() == (tmp_path / "one" / job / "model" / name).read_bytes(), name
    weights_one, weights_two = (load_file(str(tmp_path / run / job / "model" / "model.safetensors")) for run in ("one", "two"))
    assert weights_one.keys() == weights_two.keys()
    for name, value in weights_one.items():
        np.testing.assert_allclose(weights_two[name], value, rtol=1e-5, atol=1e-6, err_msg=name)
    print(f"wall: 1 process {one_seconds:.1f} s; 2 processes until the kill {killed_seconds:.1f} s; restart {restart_seconds:.1f} s")


# PassUntil on 2 processes: every process samples (its share of) each round, process 0 alone verifies
# and writes, and the others adopt its counts. The verifier below would disagree across processes if
# process 1 ran it, so equal states show that only process 0's verdicts count.
PASS_UNTIL_SCRIPT = r"""
import json, os, sys
from emergence_jax.distributed import initialize
if os.environ.get("JAX_NUM_PROCESSES"):
    initialize()
import jax
from emergence_jax.evaluate.pass_until import run_pass_until

class Sampler:
    def sample(self, prompts, n, rng):
        return [[str(int(v)) for v in rng.integers(0, 7, size=n)] for _ in prompts]

def verify(prompt, completion):
    return completion == ("3" if jax.process_index() == 0 else "0")

state = run_pass_until(list(range(5)), Sampler(), verify, state_path=sys.argv[1], r=2, max_samples=40, round_budget=8, seed=1)
print("STATE" + json.dumps({k: state[k] for k in ("rounds", "instances", "results")}))
"""


def run_processes(argv: list[str], processes: int) -> list[str]:
    """`python ARGV` in `processes` JAX processes on localhost (8 CPU devices in all); their logs."""
    port = free_port()
    started = []
    for process_id in range(processes):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={8 // processes}"}
        if processes > 1:
            env |= {"JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
                    "JAX_NUM_PROCESSES": str(processes), "JAX_PROCESS_ID": str(process_id)}
        started.append(subprocess.Popen([sys.executable, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return finish(started)


def test_pass_until_state_follows_process_0_on_two_processes(tmp_path):
    def states(logs):
        return [json.loads(line[len("STATE"):]) for log in logs for line in log.splitlines() if line.startswith("STATE")]

    one = states(run_processes(["-c", PASS_UNTIL_SCRIPT, str(tmp_path / "one.json")], 1))
    two = states(run_processes(["-c", PASS_UNTIL_SCRIPT, str(tmp_path / "two.json")], 2))
    assert len(one) == 1 and len(two) == 2
    assert two[0] == two[1] == one[0]
    assert sum(i["passes"] for i in one[0]["instances"]) > 0 and one[0]["rounds"] > 1  # verdicts mattered, over several rounds
    assert json.loads((tmp_path / "two.json").read_text())["instances"] == one[0]["instances"]


@pytest.mark.slow
def test_pass_until_command_on_two_processes_equals_one(inputs, tmp_path):
    from emergence_jax.data.builders import prepare_dataset

    root, model, _, _ = inputs
    prepare_dataset("gsm8k", data_dir=root / "tfds", manual_dir=FIXTURES / "gsm8k")
    argv = ["-m", "emergence_jax.cli", "pass-until", "--model", str(model), "--task", "gsm8k", "--data-dir", str(root / "tfds"),
            "--shots", "0", "--limit", "2", "--max-samples", "24", "--round-budget", "16", "--batch-size", "8", "--max-new-tokens", "3"]
    run_processes([*argv, "--out", str(tmp_path / "one.json"), "--mesh", "fsdp=8"], 1)
    logs = run_processes([*argv, "--out", str(tmp_path / "two.json"), "--mesh", "fsdp=-1", "--distributed"], 2)
    one, two = (json.loads((tmp_path / name).read_text()) for name in ("one.json", "two.json"))
    assert two["instances"] == one["instances"] and two["results"] == one["results"] and two["rounds"] == one["rounds"] > 1
    assert "->" in logs[0] and "->" not in logs[1]  # process 0 reports (and writes); process 1 does not


# `emergence-jax evaluate` with a spy on `generate`: per call, the batch shape and the rows of new
# tokens that this process's devices hold (where XLA computed them), with their tokens.
GENERATION_SCRIPT = r"""
import json, sys
import numpy as np
import emergence_jax.models.sampling as sampling
from emergence_jax.cli import main

calls, original = [], sampling.generate

def spy(*args, **kwargs):
    new = original(*args, **kwargs)
    here = {}
    for shard in new.addressable_shards:
        rows = range(*shard.index[0].indices(new.shape[0]))
        here.update(zip(rows, np.asarray(shard.data).tolist()))
    calls.append({"shape": list(new.shape), "rows": here})
    return new

sampling.generate = spy
code = main(sys.argv[1:])
print("CALLS" + json.dumps(calls))
sys.exit(code)
"""


@pytest.mark.slow
def test_evaluate_generation_on_two_processes_splits_the_batches_and_equals_one(inputs, tmp_path):
    """GSM8K `evaluate --distributed` on 2 processes: each process generates only its half of every
    batch (its devices hold half the rows), the halves together are the 1-process run's tokens,
    and the results file (written by process 0 alone) equals the 1-process one row for row."""
    from emergence_jax.data.builders import prepare_dataset

    def calls(log):
        [line] = [line for line in log.splitlines() if line.startswith("CALLS")]
        return [(c["shape"], {int(row): tokens for row, tokens in c["rows"].items()}) for c in json.loads(line[len("CALLS"):])]

    root, model, _, _ = inputs
    prepare_dataset("gsm8k", data_dir=root / "tfds", manual_dir=FIXTURES / "gsm8k")
    argv = ["-c", GENERATION_SCRIPT, "evaluate", "--model", str(model), "--task", "gsm8k", "--data-dir", str(root / "tfds"),
            "--split", "train", "--shots", "0", "--limit", "10", "--batch-size", "8", "--max-new-tokens", "6",
            "--pretrain-loss", "2.5", "--mesh", "fsdp=-1"]
    began = time.monotonic()
    [one] = run_processes([*argv, "--out", str(tmp_path / "one.csv")], 1)
    one_seconds = time.monotonic() - began
    began = time.monotonic()
    two = run_processes([*argv, "--out", str(tmp_path / "two.csv"), "--distributed"], 2)
    two_seconds = time.monotonic() - began

    reference = read_records(tmp_path / "one.csv")
    assert [(r["metric"], r["n_eval"]) for r in reference] == [("exact_match", 10)]
    assert read_records(tmp_path / "two.csv") == reference  # one row: process 1 appended nothing
    one_calls, (first, second) = calls(one), (calls(log) for log in two)
    # 10 prompts in batches of 8 rows (the last filled up): 2 generate calls on every process.
    assert [shape for shape, _ in one_calls] == [shape for shape, _ in first] == [shape for shape, _ in second] == [[8, 6]] * 2
    generated = []
    for (_, whole), (_, rows_0), (_, rows_1) in zip(one_calls, first, second, strict=True):
        assert sorted(whole) == list(range(8))  # one process holds every row
        assert len(rows_0) == len(rows_1) == 4 and sorted(rows_0 | rows_1) == list(range(8))  # two hold half each
        assert rows_0 | rows_1 == whole
        generated += [whole[row] for row in sorted(whole)]
    assert len({tuple(tokens) for tokens in generated[:10]}) > 1  # the prompts' completions differ: tokens were compared
    print(f"wall: 1 process {one_seconds:.1f} s; 2 processes {two_seconds:.1f} s")
