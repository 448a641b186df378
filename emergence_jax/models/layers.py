"""Building blocks shared by the LLaMA and GPT-NeoX models.

Every parameter is an `nnx.Param` whose `out_sharding` metadata holds *logical* axis names (see
`emergence_jax.sharding`); `eager_sharding=False` keeps Flax from placing it at construction, since
placement is decided by `emergence_jax.sharding.param_shardings` under a mesh. Parameters are
stored in `param_dtype` and cast to the compute `dtype` at use; norms, softmax and RoPE run in
float32 whatever the compute dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from emergence_jax.errors import UserError
from emergence_jax.sharding import constrain

Initializer = Callable[..., jax.Array]


class KeyStream:
    """Fresh PRNG keys folded from one key by a Python counter.

    Modules below the top level take one of these instead of `nnx.Rngs`: drawing from `nnx.Rngs`
    updates NNX state on every draw, which made tracing a 70B model's construction (for its
    abstract shapes) take tens of seconds.
    """

    def __init__(self, key: jax.Array):
        self.key = key
        self.count = 0

    def __call__(self) -> jax.Array:
        self.count += 1
        return jax.random.fold_in(self.key, self.count)


def param(key: jax.Array | None, init: Initializer, shape: Sequence[int], dtype, names: Sequence[str | None]) -> nnx.Param:
    """A parameter with logical axis `names`, not placed on any mesh yet."""
    return nnx.Param(init(key, tuple(shape), dtype), out_sharding=tuple(names), eager_sharding=False)


def _gelu_exact(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=False)


def _gelu_tanh(x: jax.Array) -> jax.Array:
    return jax.nn.gelu(x, approximate=True)


ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "gelu": _gelu_exact,
    "gelu_new": _gelu_tanh,
    "gelu_fast": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": jax.nn.relu,
}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """The activation function transformers calls `name` (its ACT2FN table)."""
    if name not in ACTIVATIONS:
        raise UserError(f"config.json: hidden_act {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense(x: jax.Array, kernel: jax.Array, n_in: int) -> jax.Array:
    """`x · kernel` over x's last `n_in` axes, with a weight gradient XLA:CPU runs as a plain matmul.

    Autodiff's weight gradient contracts the token axis, the major axis of both x and the output
    gradient; XLA:CPU then copied the output gradient transposed (for the output projection,
    [2048, 4096] at the train bench's size) and ran the dot in Eigen at ~10 GFLOP/s instead of its
    matmul library (YNNPACK). Here the smaller of x and the output gradient is transposed first,
    behind an optimisation barrier (CPU only) so that XLA cannot fold the transpose back into the
    dot: the train bench's step went from 2.09 to 1.55 s of traced XLA op time at 1 thread.
    """
    return jnp.tensordot(x, kernel, axes=n_in)


def _dense_forward(x, kernel, n_in):
    return jnp.tensordot(x, kernel, axes=n_in), (x, kernel)


def _dense_backward(n_in, residuals, grad):
    x, kernel = residuals
    n_out, tokens = kernel.ndim - n_in, x.ndim - n_in
    dx = jnp.tensordot(grad, kernel, axes=(tuple(range(tokens, grad.ndim)), tuple(range(n_in, kernel.ndim))))

    # The barriers only on CPU: GPU/TPU matmuls take transposed operands as they are.
    barrier = jax.lax.optimization_barrier if jax.default_backend() == "cpu" else (lambda a: a)

    def tokens_last(a):  # [tokens..., features...] -> [features..., tokens...], materialised
        return barrier(jnp.transpose(a, (*range(tokens, a.ndim), *range(tokens))))

    if math.prod(x.shape[tokens:]) <= math.prod(grad.shape[tokens:]):
        dkernel = jnp.tensordot(tokens_last(x), grad, axes=tokens)
    else:  # dkernel^T = grad^T x, then transpose the (small) weight-shaped result (barrier: else XLA
        # folds that transpose into the dot, and it is back to transposed operands)
        transposed = barrier(jnp.tensordot(tokens_last(grad), x, axes=tokens))
        dkernel = jnp.transpose(transposed, (*range(n_out, kernel.ndim), *range(n_out)))
    return dx, dkernel.astype(kernel.dtype)


dense.defvjp(_dense_forward, _dense_backward)


class Dense(nnx.Module):
    """`y = x · kernel (+ bias)`, contracting the last `len(in_shape)` axes of x.

    The kernel has shape `in_shape + out_shape` (Flax layout, the transpose of torch's `weight`), so
    attention projections can keep a separate heads axis to shard over.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        names: Sequence[str | None],
        *,
        use_bias: bool = False,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        init_std: float = 0.02,
        keys: KeyStream,
    ):
        in_shape, out_shape = tuple(in_shape), tuple(out_shape)
        self.n_in = len(in_shape)
        self.dtype = dtype
        self.kernel = param(keys(), nnx.initializers.normal(init_std), in_shape + out_shape, param_dtype, names)
        self.bias = (
            param(keys(), nnx.initializers.zeros, out_shape, param_dtype, names[self.n_in :]) if use_bias else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = dense(x.astype(self.dtype), self.kernel[...].astype(self.dtype), self.n_in)
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table `[vocab, embed]`; `attend` is the tied output projection."""

    def __init__(self, vocab_size: int, features: int, *, dtype=jnp.float32, param_dtype=jnp.float32, keys: KeyStream):
        self.dtype = dtype
        self.embedding = param(keys(), nnx.initializers.normal(0.02), (vocab_size, features), param_dtype, ("vocab", "embed"))

    def __call__(self, ids: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        return jnp.dot(x.astype(self.dtype), self.embedding[...].astype(self.dtype).T)


class RMSNorm(nnx.Module):
    """LLaMA's RMSNorm: normalise in float32, cast to the compute dtype, then scale (as transformers)."""

    def __init__(self, features: int, eps: float, *, dtype=jnp.float32, param_dtype=jnp.float32):
        self.eps = eps
        self.dtype = dtype
        self.scale = param(None, nnx.initializers.ones, (features,), param_dtype, ("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(self.dtype) * y.astype(self.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm with scale and bias, computed in float32."""

    def __init__(self, features: int, eps: float, *, dtype=jnp.float32, param_dtype=jnp.float32):
        self.eps = eps
        self.dtype = dtype
        self.scale = param(None, nnx.initializers.ones, (features,), param_dtype, ("norm",))
        self.bias = param(None, nnx.initializers.zeros, (features,), param_dtype, ("norm",))

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)).astype(self.dtype)


def rope_cos_sin(positions: jax.Array, inv_freq: np.ndarray) -> tuple[jax.Array, jax.Array]:
    """cos and sin `[batch, length, rotary_dim]` for integer `positions` `[batch, length]` (float32)."""
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """HF rotate-half RoPE on the first `rotary_dim` features of each head of `x` `[b, t, heads, d]`."""
    rot = cos.shape[-1]
    x_rot, x_pass = x[..., :rot].astype(jnp.float32), x[..., rot:]
    half = rot // 2
    rotated = jnp.concatenate([-x_rot[..., half:], x_rot[..., :half]], axis=-1)
    out = (x_rot * cos[:, :, None, :] + rotated * sin[:, :, None, :]).astype(x.dtype)
    return jnp.concatenate([out, x_pass], axis=-1) if x_pass.shape[-1] else out


def attention_implementation(dtype) -> str:
    """`jax.nn.dot_product_attention`'s kernel for compute `dtype` on the default backend.

    "cudnn" (fused flash attention) on GPU in bfloat16/float16, "xla" otherwise. XLA's version
    forms float32 scores `[b, kv_heads, group, t, s]`; on CPU that is also what a fused kernel
    would compute, and the cuDNN kernel never materialises them. (TPU: a Pallas flash kernel with
    segment ids exists in `jax.experimental.pallas.ops.tpu.flash_attention`; it is not wired in.)
    """
    if jax.default_backend() == "gpu" and jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16)):
        return "cudnn"
    return "xla"


CAUSAL_BLOCK = 64  # query block of the causal block skipping (tokens)
MAX_CAUSAL_BLOCKS = 8


def causal_blocks(length: int) -> list[tuple[int, int]]:
    """Query blocks `(start, end)` for causal attention over `length` tokens without a cache.

    A query block only needs the keys up to its own end (later keys are masked by causality), so
    attention runs per block on keys `[0, end)`: 1 block under 2 x `CAUSAL_BLOCK` tokens, else
    blocks of at least `CAUSAL_BLOCK` tokens, at most `MAX_CAUSAL_BLOCKS` of them (8 blocks do
    ~56% of the full score matrix's work).
    """
    if length < 2 * CAUSAL_BLOCK:
        return [(0, length)]
    count = min(MAX_CAUSAL_BLOCKS, length // CAUSAL_BLOCK)
    size = -(-length // count)
    return [(start, min(start + size, length)) for start in range(0, length, size)]


def dot_product_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, *, causal: bool = False) -> jax.Array:
    """Softmax attention with grouped-query heads, through `jax.nn.dot_product_attention`.

    q `[b, t, heads, d]`, k and v `[b, s, kv_heads, d]`, mask `[b, t, s]` (True = may attend).
    Scores and softmax in float32; rows with nothing to attend to (left padding) give finite garbage.
    `causal` (no KV cache: query i is key i and `mask` hides every key after its query) lets the
    XLA kernel skip the key blocks above the diagonal (`causal_blocks`): same numbers, and on
    XLA:CPU, which forms the whole float32 score matrix, 25-35% less attention time (measured at
    4x256 and 8x512 tokens).
    """
    implementation = attention_implementation(q.dtype)
    if implementation == "cudnn":
        try:
            return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None], implementation="cudnn")
        except (NotImplementedError, ValueError, RuntimeError):  # shape or version the kernel refuses
            pass
    blocks = causal_blocks(q.shape[1]) if causal and q.shape[1] == k.shape[1] else [(0, q.shape[1])]
    outs = [
        jax.nn.dot_product_attention(
            q[:, start:end], k[:, :end] if causal else k, v[:, :end] if causal else v,
            mask=(mask[:, start:end, :end] if causal else mask)[:, None], implementation="xla",
        )
        for start, end in blocks
    ]
    return outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=1)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class LayerCache:
    """Keys and values of one layer, `[batch, kv_heads, max_length, head_dim]`.

    Heads come before slots so that attention over the cache is a plain batched matmul over
    `(batch, kv_heads)`: with slots first, XLA:CPU transposed the whole cache (8 copies of 8 MB at
    the sampling bench's size) on every decode step, 37% of its time.
    """

    key: jax.Array
    value: jax.Array

    def keys_values(self, dtype) -> tuple[jax.Array, jax.Array]:
        """Keys and values as `dot_product_attention` takes them, `[b, max_length, kv_heads, d]`
        (XLA folds this transpose into the attention matmuls)."""
        return jnp.swapaxes(self.key, 1, 2).astype(dtype), jnp.swapaxes(self.value, 1, 2).astype(dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class KVCache:
    """Decoding state: keys/values (a list of per-layer caches, or one stacked `LayerCache` with a
    leading layer axis), which slots hold real tokens, and the next slot to write.

    Prompts are left-padded, so all rows write the same slot at each step; `key_mask` `[batch,
    max_length]` marks the slots holding real (non-pad) tokens, and `index` is a scalar int32.
    """

    layers: list[LayerCache] | LayerCache
    key_mask: jax.Array
    index: jax.Array

    @property
    def max_length(self) -> int:
        return self.key_mask.shape[1]


def init_cache(config, batch: int, max_length: int, dtype=jnp.float32, *, stacked: bool = False) -> KVCache:
    """An empty cache for `batch` sequences of up to `max_length` tokens (prompt + new tokens).

    `stacked` holds all layers in one `[num_layers, ...]` pair of arrays, the layout a scanned model
    updates in place (either layout works with either model).
    """
    shape = (batch, config.kv_heads, max_length, config.head_dim)
    names = ("batch", "act_kv_heads", "cache_length", None)
    if stacked:
        stacked_names = ("layers", *names)
        zeros = jnp.zeros((config.num_layers, *shape), dtype)
        layers = LayerCache(constrain(zeros, stacked_names), constrain(zeros, stacked_names))
    else:
        layers = [
            LayerCache(constrain(jnp.zeros(shape, dtype), names), constrain(jnp.zeros(shape, dtype), names))
            for _ in range(config.num_layers)
        ]
    return KVCache(layers, jnp.zeros((batch, max_length), bool), jnp.zeros((), jnp.int32))


def attention_mask_and_cache(
    cache: KVCache | None,
    attention_mask: jax.Array | None,
    length: int,
    batch: int,
    segment_ids: jax.Array | None = None,
) -> tuple[jax.Array, KVCache | None]:
    """The `[b, t, s]` attention mask for `length` new tokens, and the cache with their slots marked.

    Without a cache: causal within the call, and `attention_mask` `[b, t]` (1 = real token) hides
    padded keys; `segment_ids` `[b, t]` (packed rows) lets a token see only keys of its own segment.
    With a cache: the new tokens go to slots `index .. index + length`; a query may see every real
    slot up to its own (segment ids are not supported there).
    """
    tokens_mask = jnp.ones((batch, length), bool) if attention_mask is None else attention_mask.astype(bool)
    if cache is None:
        causal = jnp.tril(jnp.ones((length, length), bool))
        mask = causal[None] & tokens_mask[:, None, :]
        if segment_ids is not None:
            mask = mask & (segment_ids[:, :, None] == segment_ids[:, None, :])
        return mask, None
    if segment_ids is not None:
        raise UserError("model: segment_ids (packed rows) cannot be combined with a KV cache")
    key_mask = jax.lax.dynamic_update_slice(cache.key_mask, tokens_mask, (0, cache.index))
    slots = jnp.arange(cache.max_length)
    query_slots = cache.index + jnp.arange(length)
    mask = key_mask[:, None, :] & (slots[None, None, :] <= query_slots[None, :, None])
    return mask, KVCache(cache.layers, key_mask, cache.index)


def write_cache(layer: LayerCache, index: jax.Array, k: jax.Array, v: jax.Array) -> LayerCache:
    """Store new keys/values `[b, t, kv_heads, d]` at slot `index` of a layer's cache."""
    key = jax.lax.dynamic_update_slice(layer.key, jnp.swapaxes(k, 1, 2).astype(layer.key.dtype), (0, 0, index, 0))
    value = jax.lax.dynamic_update_slice(layer.value, jnp.swapaxes(v, 1, 2).astype(layer.value.dtype), (0, 0, index, 0))
    return LayerCache(key, value)


def default_positions(cache: KVCache | None, batch: int, length: int) -> jax.Array:
    """Positions `0 .. length-1` (offset by the cache index), as transformers uses without position_ids."""
    start = 0 if cache is None else cache.index
    return jnp.broadcast_to(start + jnp.arange(length, dtype=jnp.int32), (batch, length))
