"""`emergence-jax bench model`: forward and batched-decode tokens/s beside transformers/PyTorch.

Both sides run the same random ~100M-parameter LLaMA (hidden 640, 12 layers, 10 heads, vocab
32000) in float32 in this process, with the same number of threads: ours is the jitted NNX model
and `emergence_jax.models.sampling.generate` (KV cache, one compiled while-loop); the reference is
`LlamaForCausalLM` under `torch.inference_mode` and its `generate`. Forward tokens/s counts batch x
length per second; decode tokens/s counts new tokens (batch x max_new_tokens) per second, prefill
included on both sides. Rounds are interleaved (see `emergence_jax.bench.harness`).

With `--no-reference` only our side runs, e.g. on an accelerator with `--dtype bfloat16`, where
forward MFU is reported as 2 x params x tokens/s (plus attention) over the device's peak FLOP/s.
"""

from __future__ import annotations

import argparse
import tempfile


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
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="our compute dtype")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s for MFU (default: from the device kind)")
    parser.add_argument("--seed", type=int, default=0)


def measure(args: argparse.Namespace, bench) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from emergence_jax.bench.harness import peak_flops
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
    dtype = getattr(jnp, args.dtype)
    device = jax.devices()[0]
    bench.say(f"LLaMA {params / 1e6:.0f}M params (hidden {args.hidden}, {args.layers} layers, vocab {args.vocab}); "
              f"forward {args.batch}x{args.length}; decode {args.decode_batch} x ({args.prompt} prompt + {args.new_tokens} new, greedy); "
              f"jax on {device.device_kind} ({args.dtype})")

    reference = None if bench.no_reference else _reference(args, config, forward_ids, prompts, bench.threads)
    model = build_model(config, dtype=dtype, seed=args.seed) if reference is None else _load_same_weights(reference["model"], dtype)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    ids = jnp.asarray(forward_ids)
    prompt_rows = [list(map(int, row)) for row in prompts]
    forward_tokens = args.batch * args.length
    measured = bench.compare(
        "forward", "tokens/s", forward_tokens, lambda: forward(state, ids).block_until_ready(), reference and reference["forward"],
    )
    if reference is not None:
        difference = float(np.abs(np.asarray(forward(state, ids)) - reference["logits"]).max())
        measured.extra["max_abs_logit_difference"] = difference
        bench.say(f"max |logit difference| vs transformers: {difference:.2e}")
    bench.compare(
        "batched greedy decode", "tokens/s", args.decode_batch * args.new_tokens,
        lambda: generate(model, prompt_rows, max_new_tokens=args.new_tokens).block_until_ready(),
        reference and reference["decode"],
    )
    peak = peak_flops(device.device_kind, args.peak_tflops)
    if peak and device.platform != "cpu":
        flops = forward_tokens * (2 * params + 2 * args.layers * args.length * args.hidden)
        measured.extra["mfu"] = flops * measured.ours / forward_tokens / peak
        bench.say(f"forward MFU: {measured.extra['mfu']:.1%} of {peak / 1e12:.0f} TFLOP/s ({device.device_kind})")


def _reference(args, config, forward_ids, prompts, threads: int) -> dict:
    """transformers side: the model, its forward and decode calls, and its logits."""
    import torch
    import transformers

    from emergence_jax.bench.harness import set_torch_threads

    set_torch_threads(threads)
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

    return {"model": model, "forward": forward, "decode": decode, "logits": forward().float().numpy()}


def _load_same_weights(torch_model, dtype):
    from emergence_jax.checkpoints import load_hf_model

    with tempfile.TemporaryDirectory() as folder:
        torch_model.save_pretrained(folder)
        return load_hf_model(folder, dtype=dtype, progress=False)
