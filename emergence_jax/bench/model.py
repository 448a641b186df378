"""`emergence-jax bench model`: forward and batched-decode tokens/s beside transformers/PyTorch.

Both sides run the same random ~100M-parameter LLaMA (hidden 640, 12 layers, 10 heads, vocab
32000) in float32 in this run: ours is the jitted NNX model and `emergence_jax.models.sampling
.generate` (KV cache, one compiled while-loop); the reference is `LlamaForCausalLM` under
`torch.inference_mode` and its `generate`. Forward tokens/s counts batch x length per second;
decode tokens/s counts new tokens (batch x max_new_tokens) per second, prefill included on both
sides. Times are medians of `--repeats` runs after one warm-up (compilation reported apart).

With `--no-reference` only our side runs, e.g. on an accelerator with `--dtype bfloat16`, where
forward MFU is reported as 2 x params x tokens/s (plus attention) over the device's peak FLOP/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

# Dense bf16 peak FLOP/s by device kind (vendor datasheets), for MFU.
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden", type=int, default=640, help="model width (640 with defaults: ~100M parameters)")
    parser.add_argument("--layers", type=int, default=12, help="decoder layers")
    parser.add_argument("--heads", type=int, default=10, help="attention heads")
    parser.add_argument("--intermediate", type=int, default=1728, help="MLP width")
    parser.add_argument("--vocab", type=int, default=32000, help="vocabulary size")
    parser.add_argument("--batch", type=int, default=4, help="forward: sequences per batch")
    parser.add_argument("--length", type=int, default=256, help="forward: tokens per sequence")
    parser.add_argument("--decode-batch", type=int, default=8, help="decode: sequences decoded together")
    parser.add_argument("--prompt", type=int, default=32, help="decode: prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=64, help="decode: new tokens per sequence (greedy)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="our compute dtype")
    parser.add_argument("--no-reference", action="store_true", help="skip transformers (e.g. on an accelerator)")
    parser.add_argument("--seed", type=int, default=0)


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
    """(first call seconds, median seconds of `repeats` further calls)."""
    started = time.perf_counter()
    fn()
    first = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return first, statistics.median(times)


def run(args: argparse.Namespace) -> int:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from emergence_jax.models import LlamaConfig, build_model, count_params
    from emergence_jax.models.sampling import generate

    config = LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.intermediate, num_layers=args.layers,
        num_heads=args.heads, max_position_embeddings=max(args.length, args.prompt + args.new_tokens),
    )
    params = count_params(config)
    rng = np.random.default_rng(args.seed)
    forward_ids = rng.integers(0, args.vocab, size=(args.batch, args.length))
    prompts = rng.integers(3, args.vocab, size=(args.decode_batch, args.prompt))
    forward_tokens = args.batch * args.length
    decode_tokens = args.decode_batch * args.new_tokens
    dtype = getattr(jnp, args.dtype)
    device = jax.devices()[0]
    print(f"LLaMA {params / 1e6:.0f}M params (hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}); "
          f"forward {args.batch}x{args.length}; decode {args.decode_batch} x ({args.prompt} prompt + {args.new_tokens} new); "
          f"jax on {device.device_kind} ({args.dtype})")

    reference = None
    if not args.no_reference:
        reference = _reference(args, config, forward_ids, prompts)
        model = _load_same_weights(reference["model"], dtype)
    else:
        model = build_model(config, dtype=dtype, seed=args.seed)

    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    ids = jnp.asarray(forward_ids)
    first, ours_forward = _median_seconds(lambda: forward(state, ids).block_until_ready(), args.repeats)
    forward_compile = first - ours_forward
    prompt_rows = [list(map(int, row)) for row in prompts]
    first, ours_decode = _median_seconds(
        lambda: generate(model, prompt_rows, max_new_tokens=args.new_tokens).block_until_ready(), args.repeats
    )
    decode_compile = first - ours_decode

    print(f"{'measurement':<22}{'torch tok/s':>13}{'jax tok/s':>12}{'compile s':>11}{'ratio':>8}")
    for name, tokens, ours, compile_s, key in [
        ("forward", forward_tokens, ours_forward, forward_compile, "forward"),
        ("batched greedy decode", decode_tokens, ours_decode, decode_compile, "decode"),
    ]:
        ref = f"{tokens / reference[key]:>13.0f}" if reference else f"{'-':>13}"
        ratio = f"{reference[key] / ours:>8.2f}" if reference else f"{'-':>8}"
        print(f"{name:<22}{ref}{tokens / ours:>12.0f}{max(compile_s, 0.0):>11.1f}{ratio}")
    if reference:
        logits = np.asarray(forward(state, ids))
        print(f"max |logit difference| vs transformers: {np.abs(logits - reference['logits']).max():.2e}")
    peak = next((v for k, v in PEAK_FLOPS.items() if k in device.device_kind), None)
    if peak and args.dtype == "bfloat16":
        flops = forward_tokens * (2 * params + 2 * args.layers * args.length * args.hidden)
        print(f"forward MFU: {flops / ours_forward / peak:.1%} of {peak / 1e12:.0f} TFLOP/s ({device.device_kind})")
    return 0


def _reference(args, config, forward_ids, prompts) -> dict:
    """transformers side: the model, its forward and decode seconds, and its logits."""
    import torch
    import transformers

    torch.manual_seed(args.seed)
    hf_config = transformers.LlamaConfig(**{**config.to_hf(), "eos_token_id": None, "pad_token_id": 0})
    model = transformers.LlamaForCausalLM(hf_config).eval()
    ids = torch.tensor(forward_ids)
    prompt_ids = torch.tensor(prompts)
    mask = torch.ones_like(prompt_ids)

    def forward():
        with torch.inference_mode():
            return model(ids).logits

    def decode():
        with torch.inference_mode():
            return model.generate(prompt_ids, attention_mask=mask, max_new_tokens=args.new_tokens, do_sample=False,
                                  eos_token_id=None, pad_token_id=0)

    _, forward_s = _median_seconds(forward, args.repeats)
    _, decode_s = _median_seconds(decode, args.repeats)
    return {"model": model, "forward": forward_s, "decode": decode_s, "logits": forward().float().numpy()}


def _load_same_weights(torch_model, dtype):
    from emergence_jax.checkpoints import load_hf_model

    with tempfile.TemporaryDirectory() as folder:
        torch_model.save_pretrained(folder)
        return load_hf_model(folder, dtype=dtype, progress=False)
