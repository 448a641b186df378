"""PassUntil on a tiny model: intervals cover the exact (teacher-forced) pass probability."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from emergence_jax.data.prompts import GenerationPrompt
from emergence_jax.evaluate.pass_until import estimates_from_state, run_pass_until
from emergence_jax.evaluate.pass_until_run import ModelSampler, exact_answer_verifier, exact_string_verifier
from emergence_jax.models import build_model, config_from_hf

VOCAB, BOS, EOS, PAD = 24, 1, 2, 0


class CharTokenizer:
    """One character per token id, so equal strings mean equal token sequences."""

    bos_id, eos_id, pad_id = BOS, EOS, PAD

    def encode(self, text):
        return [ord(ch) - 0x100 for ch in text]

    def decode(self, ids):
        return "".join(chr(0x100 + i) for i in ids)


def _tiny_model():
    config = config_from_hf(dict(
        model_type="llama", vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        tie_word_embeddings=False,
    ))
    model = build_model(config, seed=0)
    model.lm_head.kernel[...] = model.lm_head.kernel[...] * 6  # spread the next-token probabilities
    return model


def _exact_probabilities(model, contexts, targets):
    """P(sampling exactly the target then EOS) at temperature 1, by teacher forcing, per pair."""
    seqs = [[BOS, *c, *t, EOS] for c, t in zip(contexts, targets)]
    width = max(map(len, seqs))
    padded = np.array([s + [PAD] * (width - len(s)) for s in seqs], np.int32)  # right padding: causal, harmless
    logprobs = np.asarray(nnx.jit(lambda m, ids: jax.nn.log_softmax(m(ids), axis=-1))(model, jnp.asarray(padded)))
    probs = []
    for row, (context, seq) in enumerate(zip(contexts, seqs)):
        positions = range(1 + len(context), len(seq))
        probs.append(np.exp(sum(logprobs[row, t - 1, seq[t]] for t in positions)))
    return np.array(probs)


def _instances(model, count, seed):
    """Random (context, target) pairs whose exact pass probability lies in [2e-3, 0.15]."""
    rng = np.random.default_rng(seed)
    contexts = rng.integers(3, VOCAB, size=(8 * count, 4)).tolist()
    targets = [rng.integers(3, VOCAB, size=rng.integers(0, 2)).tolist() for _ in contexts]
    probs = _exact_probabilities(model, contexts, targets)
    chosen = np.nonzero((probs >= 2e-3) & (probs <= 0.15))[0][:count]
    assert len(chosen) == count
    tok = CharTokenizer()
    return [GenerationPrompt(tok.decode(contexts[i]), tok.decode(targets[i])) for i in chosen], probs[chosen]


def test_pass_until_intervals_cover_teacher_forced_probabilities(tmp_path):
    model = _tiny_model()
    prompts, exact = _instances(model, 80, seed=0)
    sampler = ModelSampler(model, CharTokenizer(), max_new_tokens=2, max_length=64, batch_size=1024)
    r = 2
    state = run_pass_until(prompts, sampler, exact_string_verifier, state_path=tmp_path / "pu.json", r=r, max_samples=20_000, round_budget=8192, seed=0, confidence=0.9)
    estimates = estimates_from_state(state)
    assert all(e.completed for e in estimates)
    covered = np.mean([e.lower <= p <= e.upper for e, p in zip(estimates, exact)])
    assert covered >= 0.8, covered  # nominal 0.9; 80 instances
    # Probability-integral transform of K under the exact p: uniform if sampling is exactly at p.
    k = np.array([e.samples for e in estimates])
    below = stats.nbinom.cdf(k - r - 1, r, exact)
    at = stats.nbinom.pmf(k - r, r, exact)
    pit = below + np.random.default_rng(1).random(len(k)) * at
    assert stats.kstest(pit, "uniform").pvalue > 0.01
    unbiased = np.array([e.unbiased for e in estimates])
    assert np.mean(unbiased / exact) == pytest.approx(1.0, abs=0.3)


def test_exact_answer_verifier_compares_extracted_numbers():
    verify = exact_answer_verifier()
    prompt = GenerationPrompt("Q: 2+3?\nA:", "5", stop=("\n\n",))
    assert verify(prompt, " 2 plus 3 is 5. #### 5")
    assert verify(prompt, " The answer is 5.")
    assert not verify(prompt, " #### 6")
    assert not verify(prompt, " no idea")
