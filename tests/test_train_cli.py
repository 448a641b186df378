"""`emergence-jax finetune` end to end: fixture task -> LoRA finetune -> HF export -> evaluation rows."""

import argparse
from pathlib import Path

import pytest
import yaml

tokenizers = pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from emergence_jax.data.builders import prepare_dataset  # noqa: E402
from emergence_jax.records import read_records  # noqa: E402
from emergence_jax.train import command  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"
TEXT = ["Question: Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer: B", "The cat sat on the mat."]


def tiny_checkpoint(folder: Path) -> None:
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(TEXT * 20, trainer)
    bpe.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=1024, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    transformers.LlamaForCausalLM(config).save_pretrained(folder)


def test_finetune_command_trains_exports_and_appends_records(tmp_path):
    model_dir = tmp_path / "tiny"
    model_dir.mkdir()
    tiny_checkpoint(model_dir)
    data_dir = tmp_path / "tfds"
    prepare_dataset("mmlu", data_dir=data_dir, manual_dir=FIXTURES / "mmlu")
    config = tmp_path / "finetune.yaml"
    config.write_text(yaml.safe_dump({
        "run_dir": str(tmp_path / "run"),
        # as configs/finetune_*.yaml run it: scanned layers (LoRA on stacked kernels), per-layer remat
        "model": {"path": str(model_dir), "pretrain_loss": 5.5, "name": "tiny@step1", "compute_dtype": "float32", "scan_layers": True, "remat": "dots"},
        "data": {"task": "mmlu", "data_dir": str(data_dir), "num_examples": 4, "max_length": 256, "min_steps": 3},
        "optim": {"batch_size": 8, "learning_rate": 1e-3},
        "lora": {"enabled": True, "rank": 2, "targets": ["q_proj", "v_proj"]},
        "eval": {"shots": [0], "limit": 2, "records": "rows.jsonl"},
        "checkpoint": {"every_steps": 2},
    }))
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    assert command.run(parser.parse_args(["--config", str(config), "--set", "seed=1", "--no-progress"])) == 0

    run = tmp_path / "run"
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 1
    assert len((run / "metrics.jsonl").read_text().splitlines()) >= 1
    assert any((run / "tensorboard").iterdir())
    reloaded = transformers.LlamaForCausalLM.from_pretrained(run / "model")
    assert not any("lora" in name for name in reloaded.state_dict())
    rows = read_records([run / "rows.jsonl"])
    assert rows and all(r["model"] == "tiny@step1" and r["train_examples"] == 4 and r["task"] == "mmlu" for r in rows)
    assert {r["n_eval"] for r in rows} == {2}
    # The rows come from the in-memory (sharded, LoRA-merged) model; they equal an evaluation of
    # the exported folder read back from disk.
    from emergence_jax.evaluate.command import evaluate_checkpoint
    from emergence_jax.evaluate.loading import load_model_for_evaluation

    exported = load_model_for_evaluation(run / "model", progress=False)
    again = evaluate_checkpoint(
        exported, None, "mmlu", pretrain_loss=5.5, model_id="tiny@step1", shots=0, seed=0, data_dir=str(data_dir),
        limit=2, train_examples=4,
    )
    assert [r["metric"] for r in again] == [r["metric"] for r in rows]
    for mine, theirs in zip(rows, again):
        assert mine["accuracy"] == theirs["accuracy"]
        for key in {"logprob", "brier", "correct_prob"} & set(mine):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-6)
