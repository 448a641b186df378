"""The sharded train step: masked causal-LM loss, gradient accumulation, one optax update.

The model is split once into a static graph, the trainable parameters (float32 master weights,
all `nnx.Param`s for full finetuning, only the adapters for LoRA) and the frozen rest. The train
state `{"step", "params", "opt_state"}` is one pytree, sharded explicitly and donated to the step,
so the update happens in place on every device. Compute precision is the model's own
`compute_dtype` (bf16 matmuls on float32 weights).

A batch is a dict of int32 arrays shaped [accumulation_steps, microbatch, T]: `input_ids`,
`positions`, `attention_mask` (1 = real token), `loss_mask` (1 = a target token whose
prediction is scored) and optionally `segment_ids` (packed rows: tokens attend only within their
segment). Gradients are summed over microbatches and divided by the number of target
tokens in the whole batch, so accumulation gives the same update as one large batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from emergence_jax import sharding
from emergence_jax.errors import UserError
from emergence_jax.models.base import REMAT_POLICIES

TrainState = dict[str, Any]
BATCH_KEYS = ("input_ids", "positions", "attention_mask", "loss_mask")  # required; "segment_ids" optional
BATCH_AXES = ("data", "fsdp")  # mesh axes the example dimension is split over


def target_token_loss(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Summed next-token negative log-likelihood (nats) over target tokens, and their count.

    Position t predicts token t+1; it is scored when `loss_mask[t+1]` is 1, so prompt tokens and
    padding never contribute.
    """
    # Targets shifted left with the last position weighted 0, rather than slicing `logits[:, :-1]`:
    # the slice copied the [batch, T, vocab] logits (and its gradient padded them back) every step.
    weights = jnp.pad(loss_mask[:, 1:], ((0, 0), (0, 1))).astype(jnp.float32)
    targets = jnp.roll(input_ids, -1, axis=1)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
    return jnp.sum(nll * weights), jnp.sum(weights)


def batch_sharding(mesh: jax.sharding.Mesh) -> NamedSharding:
    """[accumulation, microbatch, T]: examples split over the data-parallel axes, tokens whole."""
    return NamedSharding(mesh, PartitionSpec(None, BATCH_AXES, None))


def data_parallel_size(mesh: jax.sharding.Mesh) -> int:
    """How many ways the example dimension of a microbatch is split."""
    return mesh.shape["data"] * mesh.shape["fsdp"]


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def remat_policy(remat: bool | str) -> str:
    """The per-layer remat policy name for a config value: bools map to "dots" / "none"."""
    if isinstance(remat, bool):
        return "dots" if remat else "none"
    if remat not in REMAT_POLICIES:
        raise UserError(f"model.remat: unknown policy {remat!r}; use one of {', '.join(REMAT_POLICIES)} (or true/false)")
    return remat


def init_train_state(params: nnx.State, tx: optax.GradientTransformation, shardings: TrainState) -> TrainState:
    """Step 0 state with the optimizer state created directly in its sharded layout."""

    def init(params):
        return {"step": jnp.zeros((), jnp.int32), "params": params, "opt_state": tx.init(params)}

    return jax.jit(init, out_shardings=shardings)(params)


def train_state_shardings(params_sharding: nnx.State, params: Any, tx: optax.GradientTransformation, mesh) -> TrainState:
    """Shardings of the whole train state: optimizer moments follow their parameter."""
    abstract_opt_state = jax.eval_shape(tx.init, params)
    opt_sharding = optax.tree_map_params(
        tx,
        lambda _, sharding: sharding,
        abstract_opt_state,
        params_sharding,
        transform_non_params=lambda _: replicated(mesh),
    )
    return {"step": replicated(mesh), "params": params_sharding, "opt_state": opt_sharding}


@dataclasses.dataclass(frozen=True)
class TrainStep:
    """`step(state, frozen, batch) -> (state, metrics)`, jitted with explicit shardings; `state` is donated."""

    step: Callable[[TrainState, nnx.State, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
    state_shardings: TrainState
    frozen_shardings: nnx.State
    batch_sharding: NamedSharding

    def __call__(self, state, frozen, batch):
        return self.step(state, frozen, batch)


def make_train_step(
    graphdef: nnx.GraphDef,
    tx: optax.GradientTransformation,
    *,
    mesh: jax.sharding.Mesh,
    state_shardings: TrainState,
    frozen_shardings: nnx.State,
    learning_rate: optax.Schedule | None = None,
    remat: bool | str = False,
) -> TrainStep:
    """Compile-ready train step for the model `graphdef` under optimizer `tx` on `mesh`.

    `remat` rematerialises each decoder layer in the backward pass: "dots" (or True) keeps only
    the outputs of weight matmuls and recomputes the rest (attention scores, activations, norms),
    "full" keeps only each layer's input, "none" (or False) keeps everything: less memory, more
    compute. On CPU, where memory is plentiful, "none" is fastest.
    """
    policy = remat_policy(remat)

    def loss_and_count(params, frozen, micro):
        model = nnx.merge(graphdef, params, frozen)
        logits = model(
            micro["input_ids"], positions=micro["positions"], attention_mask=micro["attention_mask"],
            segment_ids=micro.get("segment_ids"), remat=policy,
        )
        return target_token_loss(logits, micro["input_ids"], micro["loss_mask"])

    grad_fn = jax.value_and_grad(loss_and_count, has_aux=True)

    def step(state, frozen, batch):
        params = state["params"]

        def accumulate(carry, micro):
            grads, loss_sum, count = carry
            (micro_loss, micro_count), micro_grads = grad_fn(params, frozen, micro)
            return (jax.tree.map(jnp.add, grads, micro_grads), loss_sum + micro_loss, count + micro_count), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (grads, loss_sum, count), _ = jax.lax.scan(accumulate, (zeros, jnp.float32(0), jnp.float32(0)), batch)
        denominator = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g: g / denominator, grads)
        updates, opt_state = tx.update(grads, state["opt_state"], params)
        new_state = {"step": state["step"] + 1, "params": optax.apply_updates(params, updates), "opt_state": opt_state}
        metrics = {"loss": loss_sum / denominator, "target_tokens": count, "grad_norm": optax.tree.norm(grads)}
        if learning_rate is not None:
            metrics["learning_rate"] = jnp.asarray(learning_rate(state["step"]), jnp.float32)
        return new_state, metrics

    jitted = jax.jit(
        step,
        in_shardings=(state_shardings, frozen_shardings, batch_sharding(mesh)),  # every batch array alike
        out_shardings=(state_shardings, replicated(mesh)),
        donate_argnums=(0,),
    )
    return TrainStep(jitted, state_shardings, frozen_shardings, batch_sharding(mesh))



@dataclasses.dataclass
class Training:
    """Everything a loop needs: the step, its current state, the frozen weights and the graph."""

    step: TrainStep
    state: TrainState
    frozen: nnx.State
    graphdef: nnx.GraphDef

    def model(self) -> nnx.Module:
        """The model with the current trained weights (shares their buffers: do not step meanwhile)."""
        return nnx.merge(self.graphdef, self.state["params"], self.frozen)


def setup_training(
    model: nnx.Module,
    tx: optax.GradientTransformation,
    mesh: jax.sharding.Mesh,
    *,
    trainable: Any = nnx.Param,
    rules: sharding.Rules = sharding.DEFAULT_RULES,
    learning_rate: optax.Schedule | None = None,
    remat: bool | str = False,
    allow_replication: bool = False,
) -> Training:
    """Split `model` into trainable (`trainable` filter) and frozen weights, place both on `mesh`
    by their logical axes, create the optimizer state and compile-ready step.

    `remat` is `make_train_step`'s; `allow_replication` is `sharding.param_shardings`'."""
    graphdef, params, frozen = nnx.split(model, trainable, ...)
    params_sharding = sharding.param_shardings(params, mesh, rules, allow_replication=allow_replication)
    frozen_sharding = sharding.param_shardings(frozen, mesh, rules, allow_replication=allow_replication)
    frozen = jax.device_put(frozen, frozen_sharding)
    shardings = train_state_shardings(params_sharding, params, tx, mesh)
    state = init_train_state(jax.device_put(params, params_sharding), tx, shardings)
    step = make_train_step(
        graphdef, tx, mesh=mesh, state_shardings=shardings, frozen_shardings=frozen_sharding,
        learning_rate=learning_rate, remat=remat,
    )
    return Training(step, state, frozen, graphdef)
