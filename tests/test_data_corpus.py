"""Pretraining-loss corpus: packing with BOS/EOS separators, every token scored once, exact byte
accounting, deterministic reading of local files and of a TFDS array_record dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emergence_jax.data.builders import prepare_dataset
from emergence_jax.data.corpus import load_pretrain_corpus, pack_documents, read_documents
from emergence_jax.errors import UserError

FIXTURES = Path(__file__).parent / "fixtures" / "data"


class ByteTokenizer:
    """UTF-8 bytes shifted past the special ids: token count == byte count, so byte accounting is exact."""

    def __init__(self, bos_id=1, eos_id=2):
        self.bos_id, self.eos_id = bos_id, eos_id

    def encode(self, text: str) -> list[int]:
        return [byte + 3 for byte in text.encode("utf-8")]


def _unpack(corpus) -> list[int]:
    """The token stream back from overlapping rows (stride sequence_length - 1)."""
    stream = list(corpus.sequences[0, : corpus.lengths[0]])
    for row, length in zip(corpus.sequences[1:], corpus.lengths[1:]):
        stream += list(row[1:length])
    return stream


def test_packing_separates_documents_and_scores_every_token_once():
    documents = ["héllo world", "", "a second document", "xyz"]
    tokenizer = ByteTokenizer()
    corpus = pack_documents(documents, tokenizer, sequence_length=8, name="toy")
    expected_stream = []
    for text in documents:
        expected_stream += [1] + tokenizer.encode(text) + [2]
    assert _unpack(corpus) == expected_stream
    assert corpus.sequences.shape[1] == 8 and corpus.sequences.dtype == np.int32
    assert np.all(corpus.lengths[:-1] == 8) and 2 <= corpus.lengths[-1] <= 8
    assert np.all(corpus.sequences[-1, corpus.lengths[-1] :] == 0)  # right padding
    assert corpus.num_scored_tokens == len(expected_stream) - 1
    assert corpus.text_bytes == sum(len(text.encode("utf-8")) for text in documents)
    assert corpus.num_documents == 4 and corpus.name == "toy"


def test_max_tokens_caps_scored_tokens_and_prorates_the_cut_document():
    tokenizer = ByteTokenizer()
    corpus = pack_documents(["abcd", "efghij"], tokenizer, sequence_length=4, max_tokens=8)
    # stream: [1 a b c d 2 1 e f ...]; 9 tokens kept, 8 scored; "ef" of "efghij" is inside.
    assert _unpack(corpus) == [1, *tokenizer.encode("abcd"), 2, 1, *tokenizer.encode("ef")]
    assert corpus.num_scored_tokens == 8
    assert corpus.text_bytes == 4 + 2
    assert corpus.num_documents == 2


def test_shared_bos_and_eos_give_one_separator_and_missing_ones_none():
    same = pack_documents(["ab", "cd"], ByteTokenizer(bos_id=0, eos_id=0), sequence_length=16)
    assert _unpack(same) == [0, 100, 101, 0, 102, 103]
    bare = pack_documents(["ab", "cd"], ByteTokenizer(bos_id=None, eos_id=None), sequence_length=16)
    assert _unpack(bare) == [100, 101, 102, 103]
    assert bare.text_bytes == 3  # the first stream token ("a") is context only, never scored


def test_local_files_folders_and_tfds_dataset_read_in_order(tmp_path):
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "second"}) + "\n\n" + json.dumps({"text": "third"}) + "\n")
    (tmp_path / "a.txt").write_text("first\nstill first")
    (tmp_path / "ignored.csv").write_text("x")
    assert list(read_documents(str(tmp_path))) == ["first\nstill first", "second", "third"]
    assert list(read_documents(str(tmp_path / "b.jsonl"))) == ["second", "third"]
    tokenizer = ByteTokenizer()
    once = load_pretrain_corpus([str(tmp_path / "b.jsonl"), str(tmp_path / "a.txt")], tokenizer=tokenizer, sequence_length=5)
    again = load_pretrain_corpus([str(tmp_path / "b.jsonl"), str(tmp_path / "a.txt")], tokenizer=tokenizer, sequence_length=5)
    assert np.array_equal(once.sequences, again.sequences) and np.array_equal(once.lengths, again.lengths)
    assert _unpack(once)[:8] == [1, *tokenizer.encode("second"), 2]
    # A TFDS dataset prepared as array_record, read by name from its data_dir.
    prepare_dataset("gsm8k", data_dir=tmp_path / "tfds", manual_dir=FIXTURES / "gsm8k")
    questions = [json.loads(line)["question"] for line in (FIXTURES / "gsm8k" / "test.jsonl").read_text().splitlines()]
    tfds_docs = read_documents("emergence_gsm8k", data_dir=str(tmp_path / "tfds"), split="test", text_field="question")
    assert list(tfds_docs) == questions


def test_bad_corpus_input_is_a_user_error(tmp_path):
    (tmp_path / "bad.jsonl").write_text(json.dumps({"content": "no text field"}) + "\n")
    with pytest.raises(UserError, match="no 'text' field"):
        load_pretrain_corpus(str(tmp_path / "bad.jsonl"), tokenizer=ByteTokenizer(), sequence_length=8)
    with pytest.raises(UserError, match="nor a TFDS dataset"):
        load_pretrain_corpus("no_such_corpus_anywhere", tokenizer=ByteTokenizer(), sequence_length=8, data_dir=str(tmp_path))
    with pytest.raises(UserError, match="sequence_length"):
        pack_documents(["abc"], ByteTokenizer(), sequence_length=1)
