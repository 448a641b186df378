"""train.multi_run: every vmapped run equals the same run done alone with a plain optax loop, and
chunking the steps (evaluation points) does not change the result."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.models import LlamaConfig, build_model
from emergence_jax.train.config import OptimConfig
from emergence_jax.train.multi_run import Run, multi_run_finetune
from emergence_jax.train.optim import build_optimizer

STEPS = 6


def _model():
    config = LlamaConfig(vocab_size=23, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=2, max_position_embeddings=16)
    return build_model(config, seed=3)


def _data():
    rng = np.random.default_rng(0)
    pools = rng.integers(1, 23, (2, 40, 9)).astype(np.int32)
    mask = np.zeros(9, np.int32)
    mask[[4, 6, 8]] = 1
    return pools, mask


def _reference(model, optim, pools, mask, runs):
    """Each run alone, step by step: the minibatch of step i is drawn with key fold_in(key(seed), i)."""
    graphdef, start = nnx.split(model)
    tx = build_optimizer(optim, STEPS)

    def loss(p, tokens):
        logits = nnx.merge(graphdef, p)(tokens)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits[:, :-1], tokens[:, 1:])
        weights = jnp.broadcast_to(mask, tokens.shape)[:, 1:]
        return jnp.sum(nll * weights) / jnp.sum(weights)

    @jax.jit
    def step(params, state, i, amount, pool, seed):
        rows = jax.random.randint(jax.random.fold_in(jax.random.key(seed), i), (optim.batch_size,), 0, amount)
        grads = jax.grad(loss)(params, jnp.asarray(pools)[pool][rows])
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    out = []
    for run in runs:
        params, state = start, tx.init(start)
        for i in range(STEPS):
            params, state = step(params, state, i, run.amount, run.pool, run.seed)
        out.append(params)
    return out


def _evaluate(graphdef, params, tokens):
    return {"mean_logit": jnp.mean(nnx.merge(graphdef, params)(tokens))}


def test_each_vmapped_run_equals_the_run_alone_and_chunking_changes_nothing():
    model = _model()
    pools, mask = _data()
    optim = OptimConfig(learning_rate=3e-3, schedule="constant", warmup_fraction=0.0, batch_size=4)
    runs = [Run(5, 0, 11), Run(40, 1, 12), Run(40, 0, 13)]
    probe = jnp.asarray(pools[0, :3])
    whole = multi_run_finetune(model, optim, pools, mask, runs, steps=STEPS, evaluate=_evaluate, eval_data=probe)
    chunked = multi_run_finetune(model, optim, pools, mask, runs, steps=STEPS, evaluate=_evaluate, eval_data=probe, eval_every=2)
    assert [e["step"] for e in chunked.evaluations] == [2, 4, 6]
    _, start = nnx.split(model)
    references = _reference(model, optim, pools, mask, runs)
    for r, run in enumerate(runs):
        expected = references[r]
        got = jax.tree.map(lambda x: x[r], whole.params)
        moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(start)))
        assert moved > 1e-3, "the runs must actually train"
        for a, b, c in zip(jax.tree.leaves(expected), jax.tree.leaves(got), jax.tree.leaves(jax.tree.map(lambda x: x[r], chunked.params))):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=2e-5)
            np.testing.assert_allclose(np.asarray(c), np.asarray(b), atol=1e-6)
        np.testing.assert_allclose(chunked.evaluations[-1]["mean_logit"][r], whole.evaluations[-1]["mean_logit"][r], atol=1e-5)
        np.testing.assert_allclose(float(_evaluate(*nnx.split(whole.model(r)), probe)["mean_logit"]), whole.evaluations[-1]["mean_logit"][r], atol=1e-5)
    # different data make different models
    assert not np.allclose(np.asarray(jax.tree.leaves(whole.params)[0][0]), np.asarray(jax.tree.leaves(whole.params)[0][1]))


@pytest.mark.parametrize(
    "runs, kwargs, message",
    [
        ([Run(41, 0, 0)], {}, "amount"),
        ([Run(4, 2, 0)], {}, "pool"),
        ([Run(4, 0, 0)], {"eval_every": 4}, "divide"),
    ],
)
def test_bad_runs_are_refused(runs, kwargs, message):
    pools, mask = _data()
    optim = OptimConfig(learning_rate=1e-3, schedule="constant", warmup_fraction=0.0, batch_size=4)
    with pytest.raises(UserError, match=message):
        multi_run_finetune(_model(), optim, pools, mask, runs, steps=STEPS, **kwargs)
