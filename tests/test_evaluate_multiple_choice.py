"""Choice log-likelihoods and pretraining loss of a tiny LLaMA equal those computed with transformers.

The reference follows lm-eval-harness step by step with the PyTorch model: move the context's
trailing whitespace into the continuation, encode context and context + continuation, take the
continuation as the tail, run one unpadded row, sum the log-softmax at the continuation tokens.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from emergence_jax.checkpoints.hf import load_hf_model  # noqa: E402
from emergence_jax.data.prompts import MultipleChoicePrompt  # noqa: E402
from emergence_jax.evaluate.multiple_choice import _shared_context_groups, encode_request, evaluate_multiple_choice  # noqa: E402
from emergence_jax.evaluate.pretrain_loss import pretrain_loss  # noqa: E402
from emergence_jax.evaluate.scoring import QueryScorer, pure_language_model  # noqa: E402

MAX_LENGTH = 96
TRAINING_TEXT = [
    "Question: What is the capital of France?\nA. Paris\nB. Rome\nC. Berlin\nD. Madrid\nAnswer: A",
    "The cat sat on the mat. The dog sat on the log. Sentences can be acceptable or unacceptable.",
    "Answer the question: which of these is a fruit? apple, stone, chair, cloud. The answer is apple.",
]


class _Tokenizer:
    """encode/bos_id over a `tokenizers` byte-level BPE, as the checkpoint tokenizer exposes them."""

    def __init__(self, tokenizer):
        self._tokenizer = tokenizer
        self.bos_id = tokenizer.token_to_id("<s>")
        self.eos_id = tokenizer.token_to_id("</s>")

    def encode(self, text):
        return self._tokenizer.encode(text, add_special_tokens=False).ids


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(TRAINING_TEXT * 20, trainer)
    tokenizer = _Tokenizer(bpe)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=MAX_LENGTH, bos_token_id=tokenizer.bos_id,
        eos_token_id=tokenizer.eos_id, tie_word_embeddings=False, initializer_range=0.5,
    )
    torch_model = transformers.LlamaForCausalLM(config).eval()
    folder = tmp_path_factory.mktemp("tiny_llama")
    torch_model.save_pretrained(folder)
    model = load_hf_model(folder, progress=False)
    return tokenizer, torch_model, QueryScorer(pure_language_model(model))


def _reference_logprob(torch_model, tokenizer, context, continuation):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tokenizer.encode(context + continuation)
    context_ids = [tokenizer.bos_id] + tokenizer.encode(context)
    continuation_ids = whole[len(context_ids) - 1 :]
    row = (context_ids + continuation_ids)[-(MAX_LENGTH + 1) :]
    with torch.no_grad():
        logits = torch_model(torch.tensor([row[:-1]])).logits[0].double()
    log_probs = torch.log_softmax(logits, -1)[-len(continuation_ids) :]
    return float(log_probs.gather(-1, torch.tensor(continuation_ids)[:, None]).sum())


PROMPTS = [
    MultipleChoicePrompt("Question: What is the capital of France?\nAnswer:", (" A", " B", " C", " D"), 0),
    MultipleChoicePrompt("Question: which of these is a fruit?\nAnswer: ", ("apple", "stone", "chair", "cloud"), 0),
    MultipleChoicePrompt("The cat sat on the", (" mat.", " log and the dog sat on the mat.", "mat"), 1),
    MultipleChoicePrompt("", ("The cat", "The dog sat"), 1),
    MultipleChoicePrompt("Sentence: The dog sat on the log.\nQuestion: acceptable or unacceptable?\nAnswer:", (" acceptable", " unacceptable"), 0),
    MultipleChoicePrompt("word " * 60 + "The answer is", (" apple", " stone and the cat sat on the mat"), 0),
]


def test_choice_logprobs_equal_transformers(tiny):
    tokenizer, torch_model, scorer = tiny
    requests = [encode_request(tokenizer, p.context, c) for p in PROMPTS for c in p.continuations]
    shared = _shared_context_groups(requests, MAX_LENGTH)
    assert scorer.shares_prefixes and len(shared) >= 2, "both scoring paths (rows and KV-cache prefix) must be exercised"
    assert any(len(r.continuation) == 1 for r in requests) and any(len(r.context) > MAX_LENGTH for r in requests)
    outcomes = evaluate_multiple_choice(scorer, tokenizer, PROMPTS, max_length=MAX_LENGTH, batch_size=4)
    ours = [lp for o in outcomes for lp in o.logprobs]
    reference = [_reference_logprob(torch_model, tokenizer, p.context, c) for p in PROMPTS for c in p.continuations]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)
    assert len(set(np.round(reference, 3))) == len(reference), "choices must differ, or the test proves little"


def test_tokenization_boundary_follows_lm_eval(tiny):
    tokenizer, _, _ = tiny
    request = encode_request(tokenizer, "Answer: ", "apple")
    # The trailing space moves into the continuation, so " apple" is encoded as the model saw it.
    assert request.context == (tokenizer.bos_id, *tokenizer.encode("Answer:"))
    assert request.continuation == tuple(tokenizer.encode("Answer: apple")[len(tokenizer.encode("Answer:")) :])
    assert tokenizer.encode(" apple") != tokenizer.encode("apple")


def test_pretrain_loss_equals_numpy_cross_entropy_of_transformers_logits(tiny):
    tokenizer, torch_model, scorer = tiny
    stream = [tokenizer.bos_id] + tokenizer.encode(" ".join(TRAINING_TEXT) * 2)
    length = 33
    rows = (len(stream) - 1) // (length - 1)
    windows = np.array([stream[i * (length - 1) : i * (length - 1) + length] for i in range(rows)], dtype=np.int32)
    with torch.no_grad():
        logits = torch_model(torch.tensor(windows[:, :-1], dtype=torch.long)).logits.double().numpy()
    shifted = logits - logits.max(-1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    token_nats = -np.take_along_axis(log_softmax, windows[:, 1:, None].astype(np.int64), -1)[..., 0]
    result = pretrain_loss(scorer, windows, batch_size=3)
    assert result.tokens == token_nats.size
    assert result.nats_per_token == pytest.approx(token_nats.mean(), abs=1e-5)
