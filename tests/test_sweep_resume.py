"""`emergence-jax sweep` on tiny checkpoints: SIGKILLed at random moments (and once right after a
finetuning checkpoint) and restarted, it ends with exactly the results file of an uninterrupted
sweep (same rows, same values, no duplicates); the interrupted finetuning run resumes from its
checkpoint rather than starting over, and a second run of a finished sweep does nothing."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

tokenizers = pytest.importorskip("tokenizers")
pytest.importorskip("torch")
pytest.importorskip("transformers")

from emergence_jax.checkpoints.testing import tiny_hf_checkpoint  # noqa: E402
from emergence_jax.data.builders import prepare_dataset  # noqa: E402
from emergence_jax.records import read_records  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"
TEXT = [
    "Question: Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer: B",
    "The cat sat on the mat. The dog sat on the log. Numbers: 1, 2, 3, 10, 100.",
]
KILL_TRIALS = 2  # independent outputs, each killed KILLS_PER_TRIAL times at random moments, then finished
KILLS_PER_TRIAL = 2


def tiny_model(folder: Path, seed: int) -> Path:
    folder.mkdir(parents=True)
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(TEXT * 20, trainer)
    bpe.save(str(folder / "tokenizer.json"))
    tiny_hf_checkpoint(
        folder, "llama", seed=seed, vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64,
        max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )
    return folder


def make_sweep_inputs(root: Path):
    """Two tiny checkpoints, the MMLU fixture as TFDS, a held-out corpus and a finetuning recipe."""
    models = [tiny_model(root / f"tiny_{name}", seed) for name, seed in (("a", 0), ("b", 1))]
    prepare_dataset("mmlu", data_dir=root / "tfds", manual_dir=FIXTURES / "mmlu")
    corpus = root / "heldout.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXT))
    recipe = root / "finetune.yaml"
    recipe.write_text(yaml.safe_dump({
        "model": {"compute_dtype": "float32"},
        "data": {"max_length": 256, "min_steps": 3},
        "optim": {"batch_size": 8, "learning_rate": 1e-3},
        "checkpoint": {"every_steps": 2, "keep": 2},
        "log_every_steps": 1,
    }))
    return root, models, corpus, recipe


@pytest.fixture(scope="module")
def sweep_inputs(tmp_path_factory):
    return make_sweep_inputs(tmp_path_factory.mktemp("sweep_inputs"))


def write_sweep_config(path: Path, output: Path, inputs) -> Path:
    root, models, corpus, recipe = inputs
    path.write_text(yaml.safe_dump({
        "output_dir": str(output),
        "compilation_cache_dir": str(root / "jax_cache"),
        "data_dir": str(root / "tfds"),
        "models": [{"name": f"{m.name}@step1", "path": str(m), "params": 1000.0 * (i + 1)} for i, m in enumerate(models)],
        "tasks": [{"name": "mmlu", "shots": [1], "train_examples": [4], "seeds": [0, 1], "finetuned_shots": [0], "limit": 2}],
        "loss_corpus": {"paths": [str(corpus)], "sequence_length": 17},
        "evaluate": {"batch_size": 4, "compute_dtype": "float32"},
        "finetune": {"config": str(recipe)},
    }))
    return path


def start_sweep(config: Path) -> subprocess.Popen:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    return subprocess.Popen(
        [sys.executable, "-m", "emergence_jax.cli", "sweep", "--config", str(config), "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def run_to_end(config: Path) -> tuple[str, float]:
    began = time.monotonic()
    process = start_sweep(config)
    log, _ = process.communicate(timeout=300)
    assert process.returncode == 0, log
    return log, time.monotonic() - began


def test_killed_and_restarted_sweeps_end_with_the_uninterrupted_rows(sweep_inputs, tmp_path):
    reference_config = write_sweep_config(tmp_path / "reference.yaml", tmp_path / "reference", sweep_inputs)
    log, duration = run_to_end(reference_config)
    reference = tmp_path / "reference" / "results.csv"
    rows = read_records(reference)
    # 2 models x (1 few-shot + 2 finetuned) evaluations x 2 metrics, each with its measured loss.
    assert len(rows) == 12
    assert {(r["model"], r["train_examples"], r["seed"]) for r in rows} == {
        (f"tiny_{m}@step1", d, s) for m in "ab" for d, s in ((0, 0), (4, 0), (4, 1))
    }
    losses = {r["model"]: r["pretrain_loss"] for r in rows}
    assert all(4.0 < loss < 6.5 for loss in losses.values()) and losses["tiny_a@step1"] != losses["tiny_b@step1"]
    assert {r["params"] for r in rows if r["model"] == "tiny_b@step1"} == {2000.0}
    assert all(r["loss_corpus"] for r in rows)
    # Finetuned checkpoints were evaluated and then cleaned up; the two subsets differ.
    assert not list((tmp_path / "reference" / "work").rglob("*.safetensors"))

    rerun_log, _ = run_to_end(reference_config)
    assert reference.read_bytes() == (tmp_path / "reference" / "results.csv").read_bytes()
    assert "now:" not in rerun_log  # no job ran
    stage_rows = [line.split() for line in rerun_log.splitlines() if line.startswith(("pretrain_loss ", "fewshot ", "finetune "))]
    assert stage_rows[-3:] == [["pretrain_loss", "0", "2", "0", "0", "2"], ["fewshot", "0", "2", "0", "0", "2"], ["finetune", "0", "4", "0", "0", "4"]]

    rng = random.Random(8)
    interrupted = 0
    for trial in range(KILL_TRIALS):
        output = tmp_path / f"killed{trial}"
        config = write_sweep_config(tmp_path / f"killed{trial}.yaml", output, sweep_inputs)
        # Kill moments: a random number of finished jobs, then a random extra delay (mid-job, mid-save, ...).
        for jobs_done in sorted(rng.sample(range(8), KILLS_PER_TRIAL)):
            process = start_sweep(config)
            if kill_after(process, output, jobs_done, extra_seconds=rng.uniform(0.0, 4.0)):
                interrupted += 1
        run_to_end(config)
        assert (output / "results.csv").read_bytes() == reference.read_bytes(), f"trial {trial}"
        assert len(list((output / "done").rglob("*.json"))) == 8
    assert interrupted >= KILL_TRIALS * KILLS_PER_TRIAL - 1

    # A kill right after a finetuning job's mid-training checkpoint: the restart resumes from it.
    output = tmp_path / "mid_training"
    config = write_sweep_config(tmp_path / "mid_training.yaml", output, sweep_inputs)
    run_dir = output / "work" / "jobs" / "finetune" / "tiny_a@step1" / "mmlu" / "D4_seed0" / "run"
    process = start_sweep(config)
    assert kill_when(process, lambda: (run_dir / "checkpoints" / "2").is_dir())
    run_to_end(config)
    assert (output / "results.csv").read_bytes() == reference.read_bytes()
    logged_steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logged_steps.count(1) == logged_steps.count(2) == 1 and logged_steps[-1] == 3, logged_steps


def kill_when(process: subprocess.Popen, condition) -> bool:
    """SIGKILL `process` as soon as `condition()` holds; False if it ended first."""
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.02)
    return False


def kill_after(process: subprocess.Popen, output: Path, jobs_done: int, *, extra_seconds: float) -> bool:
    """SIGKILL `process` `extra_seconds` after `jobs_done` jobs are marked done; False if it ended first."""
    deadline = time.monotonic() + 300
    while len(list((output / "done").rglob("*.json"))) < jobs_done and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        process.wait(timeout=extra_seconds)
        return False
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return True
