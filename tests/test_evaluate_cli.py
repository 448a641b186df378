"""`emergence-jax pretrain-loss` and `evaluate` end to end on a tiny checkpoint and fixture data."""

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from emergence_jax.data import tasks  # noqa: E402
from emergence_jax.data.builders import prepare_dataset  # noqa: E402
from emergence_jax.errors import UserError  # noqa: E402
from emergence_jax.evaluate import command, pretrain_loss_command  # noqa: E402
from emergence_jax.evaluate.generation import generate_completions  # noqa: E402
from emergence_jax.evaluate.loading import load_model_for_evaluation  # noqa: E402
from emergence_jax.evaluate.multiple_choice import evaluate_multiple_choice, summarize_multiple_choice  # noqa: E402
from emergence_jax.records import read_records  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"
CORPUS_TEXT = [
    "Question: Which planet is largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer: B",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. #### 72",
    "The cat sat on the mat. The dog sat on the log. Numbers: 1, 2, 3, 10, 100, 1,000.",
]


def _run(module, argv):
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(CORPUS_TEXT * 20, trainer)
    bpe.save(str(folder / "tokenizer.json"))
    torch.manual_seed(1)
    config = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=512, bos_token_id=bpe.token_to_id("<s>"), eos_token_id=bpe.token_to_id("</s>"),
        pad_token_id=0, tie_word_embeddings=False, initializer_range=0.3,
    )
    torch_model = transformers.LlamaForCausalLM(config).eval()
    torch_model.save_pretrained(folder)
    return folder, torch_model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds")
    for dataset in ("mmlu", "gsm8k"):
        prepare_dataset(dataset, data_dir=root, manual_dir=FIXTURES / dataset)
    return str(root)


def test_pretrain_loss_then_evaluate_writes_consistent_records(checkpoint, data_dir, tmp_path):
    folder, _ = checkpoint
    corpus = tmp_path / "heldout.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in CORPUS_TEXT))
    loss_file = tmp_path / "loss.json"
    _run(pretrain_loss_command, ["--model", str(folder), "--corpus", str(corpus), "--out", str(loss_file), "--sequence-length", "17"])
    loss = json.loads(loss_file.read_text())
    assert loss["model"] == folder.name and loss["loss_corpus"]
    assert 0 < loss["pretrain_loss"] < 10 and loss["tokens"] > 50 and loss["bits_per_byte"] > 0

    out = tmp_path / "results.jsonl"
    common = ["--model", str(folder), "--data-dir", data_dir, "--pretrain-loss-file", str(loss_file), "--out", str(out)]
    _run(command, [*common, "--task", "mmlu", "--shots", "1", "--limit", "3", "--batch-size", "4"])
    rows = {row["metric"]: row for row in read_records(out)}
    assert set(rows) == {"accuracy", "length_normalized_accuracy"}
    headline = rows["accuracy"]
    assert (headline["task"], headline["shots"], headline["n_eval"], headline["chance"]) == ("mmlu", 1, 3, 0.25)
    assert headline["pretrain_loss"] == loss["pretrain_loss"] and headline["train_examples"] == 0
    # The command's numbers are the library's numbers on the same prompts.
    loaded = load_model_for_evaluation(folder)
    prompts = tasks.eval_prompts("mmlu", data_dir=data_dir, split="test", shots=1, seed=0, limit=3)
    summary = summarize_multiple_choice(evaluate_multiple_choice(loaded.scorer, loaded.tokenizer, prompts, max_length=loaded.max_length))
    assert headline["accuracy"] == pytest.approx(summary["accuracy"])
    assert headline["brier"] == pytest.approx(summary["brier"], abs=1e-6)
    assert headline["correct_prob"] == pytest.approx(summary["correct_prob"], abs=1e-6)

    _run(command, [*common, "--task", "gsm8k", "--shots", "1", "--limit", "2", "--max-new-tokens", "6"])
    rows = [row for row in read_records(out) if row["task"] == "gsm8k"]
    assert [(r["metric"], r["n_eval"], r["chance"]) for r in rows] == [("exact_match", 2, 0.0)]


def test_greedy_completions_equal_transformers_generate(checkpoint):
    folder, torch_model = checkpoint
    loaded = load_model_for_evaluation(folder)
    tokenizer = loaded.tokenizer
    contexts = ["Question: Which planet is largest?\nAnswer:", "The dog sat on the"]
    ours = generate_completions(loaded.model, tokenizer, contexts, [(), ()], max_new_tokens=7, max_length=loaded.max_length, batch_size=2)
    for context, completion in zip(contexts, ours):
        ids = torch.tensor([[tokenizer.bos_id, *tokenizer.encode(context)]])
        with torch.no_grad():
            generated = torch_model.generate(ids, max_new_tokens=7, do_sample=False, eos_token_id=tokenizer.eos_id, pad_token_id=0)
        new = generated[0, ids.shape[1] :].tolist()
        new = new[: new.index(tokenizer.eos_id)] if tokenizer.eos_id in new else new
        assert completion == tokenizer.decode(new)
    stopped = generate_completions(loaded.model, tokenizer, contexts[:1], [(ours[0][2:4],)], max_new_tokens=7, max_length=loaded.max_length)
    assert stopped == [ours[0][: ours[0].find(ours[0][2:4])]]


def test_user_errors_name_the_problem(checkpoint, data_dir, tmp_path):
    folder, _ = checkpoint
    common = ["--data-dir", data_dir, "--pretrain-loss", "2.5", "--out", str(tmp_path / "r.jsonl")]
    with pytest.raises(UserError, match="no such checkpoint folder"):
        _run(command, ["--model", str(tmp_path / "missing"), "--task", "mmlu", *common])
    with pytest.raises(UserError, match="unknown task"):
        _run(command, ["--model", str(folder), "--task", "hellaswag", *common])
    with pytest.raises(UserError, match="pretrain-loss-file"):
        _run(command, ["--model", str(folder), "--task", "mmlu", "--data-dir", data_dir, "--pretrain-loss-file", "nope.json", "--out", str(tmp_path / "r.jsonl")])
    with pytest.raises(SystemExit):  # a loss is a number; a file goes to --pretrain-loss-file (no guessing)
        _run(command, ["--model", str(folder), "--task", "mmlu", "--data-dir", data_dir, "--pretrain-loss", "loss.json", "--out", str(tmp_path / "r.jsonl")])
    with pytest.raises(UserError, match="--mesh"):
        _run(command, ["--model", str(folder), "--task", "mmlu", *common, "--mesh", "fsdp=3"])
    with pytest.raises(UserError, match=r"\.csv or \.jsonl"):
        _run(command, ["--model", str(folder), "--task", "mmlu", "--data-dir", data_dir, "--pretrain-loss", "2.5", "--out", str(tmp_path / "r.txt")])
    with pytest.raises(UserError, match="JSON"):
        _run(pretrain_loss_command, ["--model", str(folder), "--corpus", "x.txt", "--out", str(tmp_path / "loss.csv")])
    assert not (tmp_path / "r.jsonl").exists()


def test_evaluation_on_an_8_device_mesh_equals_one_device_and_splits_every_matrix(checkpoint, data_dir, tmp_path):
    import jax

    from emergence_jax.sharding import parse_mesh

    if jax.device_count() < 8:
        pytest.skip("needs 8 (fake) devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    folder, _ = checkpoint
    mesh = parse_mesh("fsdp=4,tensor=2")
    single = load_model_for_evaluation(folder, progress=False)
    sharded = load_model_for_evaluation(folder, mesh=mesh, progress=False)
    # No parameter matrix is whole on any device; only 1-D norm scales are replicated.
    from flax import nnx

    total_bytes, per_device = 0, {}
    for path, variable in nnx.to_flat_state(nnx.state(sharded.model, nnx.Param)):
        value = variable.get_value()
        total_bytes += value.nbytes
        for shard in value.addressable_shards:
            per_device[shard.device] = per_device.get(shard.device, 0) + shard.data.nbytes
            if value.ndim >= 2:
                assert shard.data.size < value.size, f"{path}: whole on {shard.device} ({value.sharding.spec})"
    assert len(per_device) == 8 and max(per_device.values()) < total_bytes / 4
    rows = {}
    for name, loaded in (("single", single), ("sharded", sharded)):
        rows[name] = command.evaluate_checkpoint(
            loaded, None, "mmlu", pretrain_loss=2.5, model_id="tiny", shots=1, data_dir=data_dir, limit=5, batch_size=3
        )
    for one, eight in zip(rows["single"], rows["sharded"], strict=True):
        assert one["metric"] == eight["metric"] and one["accuracy"] == eight["accuracy"] and set(one) == set(eight)
        for key in {"brier", "correct_prob", "logprob"} & set(one):
            assert eight[key] == pytest.approx(one[key], rel=1e-5, abs=1e-6)
    assert rows["single"][0]["metric"] == "accuracy" and "logprob" in rows["single"][0]
    # The command line: --mesh and --param-dtype bfloat16 load onto the mesh in bf16 and write rows.
    out = tmp_path / "mesh.jsonl"
    _run(command, ["--model", str(folder), "--task", "mmlu", "--data-dir", data_dir, "--pretrain-loss", "2.5", "--out", str(out),
                   "--shots", "1", "--limit", "5", "--mesh", "fsdp=4,tensor=2", "--param-dtype", "bfloat16", "--batch-size", "3"])
    bf16_rows = read_records(out)
    assert [r["metric"] for r in bf16_rows] == [r["metric"] for r in rows["single"]]
    assert abs(bf16_rows[0]["logprob"] - rows["single"][0]["logprob"]) < 0.05 * abs(rows["single"][0]["logprob"])
