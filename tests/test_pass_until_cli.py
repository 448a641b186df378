"""`emergence-jax pass-until` end to end on a tiny checkpoint and GSM8K fixture data."""

import argparse
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from emergence_jax.data.builders import prepare_dataset  # noqa: E402
from emergence_jax.errors import UserError  # noqa: E402
from emergence_jax.evaluate import pass_until_run  # noqa: E402
from emergence_jax.evaluate.pass_until import read_state  # noqa: E402
from emergence_jax.models import count_params  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "data"


def _run(argv):
    parser = argparse.ArgumentParser()
    pass_until_run.add_arguments(parser)
    return pass_until_run.run(parser.parse_args(argv))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_checkpoint")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(["Natalia sold clips to 48 of her friends. #### 72", "1 2 3 10 100"] * 20, trainer)
    bpe.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=512, bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    transformers.LlamaForCausalLM(config).eval().save_pretrained(folder)
    return folder


def test_pass_until_command_censors_resumes_and_checks_settings(checkpoint, tmp_path):
    data_dir = tmp_path / "tfds"
    prepare_dataset("gsm8k", data_dir=data_dir, manual_dir=FIXTURES / "gsm8k")
    out = tmp_path / "pu.json"
    argv = ["--model", str(checkpoint), "--task", "gsm8k", "--data-dir", str(data_dir), "--shots", "0", "--limit", "2",
            "--max-samples", "48", "--round-budget", "32", "--batch-size", "16", "--max-new-tokens", "3", "--out", str(out)]
    assert _run(argv) == 0
    state = read_state(out)
    assert state["finished"] and len(state["results"]) == 2
    assert state["metadata"]["task"] == "gsm8k" and state["metadata"]["model"] == checkpoint.name
    from emergence_jax.checkpoints.hf import read_hf_config
    assert state["metadata"]["params"] == count_params(read_hf_config(checkpoint))
    for result in state["results"]:  # a random model does not solve GSM8K: censored at the cap
        assert result["censored"] and result["samples"] == 48 and result["upper_one_sided"] < 0.06

    before = out.read_text()
    assert _run(argv) == 0  # finished: resuming does nothing and leaves the file as it was
    assert out.read_text() == before
    with pytest.raises(UserError, match="different settings"):
        _run([*argv, "--r", "2"])
    with pytest.raises(UserError, match="generation or code task"):
        _run([*argv[:3], "mmlu", *argv[4:]])
    assert json.loads(before) == json.loads(out.read_text())
    # On an 8-device mesh (weights split over fsdp) the sampler runs the same rounds.
    import jax

    if jax.device_count() >= 8:
        mesh_out = tmp_path / "pu_mesh.json"
        assert _run([*argv[:-1], str(mesh_out), "--mesh", "fsdp=8"]) == 0
        sharded = read_state(mesh_out)
        assert sharded["results"] == json.loads(before)["results"] and sharded["rounds"] == json.loads(before)["rounds"]
