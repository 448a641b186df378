"""Tokenizers load from a checkpoint folder and agree with the libraries transformers uses."""

import io
import json

import pytest

from emergence_jax.checkpoints.tokenizer import load_tokenizer
from emergence_jax.errors import UserError

TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Question: what is 12 plus 30? Answer: 42",
    "Emergence happens when accuracy leaves chance and rises sharply.",
    "def add(a, b):\n    return a + b\n",
] * 20


def _bpe_tokenizer_json(folder):
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(TEXT, trainer)
    tok.save(str(folder / "tokenizer.json"))
    return tok


def test_tokenizer_json_matches_transformers_fast_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    _bpe_tokenizer_json(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}))
    ours = load_tokenizer(tmp_path)
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    for text in TEXT[:4] + ["unseen wörds ✓"]:
        assert ours.encode(text) == ref.encode(text, add_special_tokens=False)
        assert ours.decode(ours.encode(text)) == text
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 3)
    assert ours.decode([1] + ours.encode("fox") + [2]) == "fox"


def test_sentencepiece_model_matches_sentencepiece(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_writer=model, vocab_size=80, model_type="bpe",
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2,
    )
    (tmp_path / "tokenizer.model").write_bytes(model.getvalue())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "pad_token_id": 0}))
    ours = load_tokenizer(tmp_path)
    ref = spm.SentencePieceProcessor(model_proto=model.getvalue())
    for text in TEXT[:4]:
        assert ours.encode(text) == ref.encode(text)
    assert ours.decode([1] + ours.encode("the lazy dog") + [2]) == "the lazy dog"
    assert (ours.bos_id, ours.eos_id, ours.pad_id) == (1, 2, 0)
    assert ours.kind == "sentencepiece"


def test_tokenizer_json_is_preferred_over_sentencepiece(tmp_path):
    _bpe_tokenizer_json(tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"not read")
    assert load_tokenizer(tmp_path).kind == "tokenizers"


def test_folder_without_tokenizer_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no tokenizer.json or tokenizer.model"):
        load_tokenizer(tmp_path)
