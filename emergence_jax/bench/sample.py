"""`emergence-jax bench sample`: sampled tokens/s (temperature 1) beside transformers' `generate`.

Both sides sample from the same random LLaMA checkpoint in this run: transformers/PyTorch with
`generate(do_sample=True)` (its own KV cache, batched), and ours, `emergence_jax.models.sampling.generate`
(one jitted prefill + `lax.while_loop` decode over a preallocated KV cache). Every row samples
exactly `--new-tokens` tokens (no EOS), so both sides produce the same number of tokens. Throughput is
new tokens per second of wall time, rounds interleaved with equal threads (`emergence_jax.bench.harness`).
`--reference-batch` lets the reference run at its own batch size (e.g. 1, how sampling loops are
often written); by default both use `--batch-size`. Needs the `test` extras (torch, transformers).

With `--no-reference --preset NAME`, only our side runs, on whatever accelerator JAX finds (e.g. a 1B
preset at batch 256), with random weights initialised on the device.
"""

from __future__ import annotations

import argparse
import tempfile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    parser.add_argument("--batch-size", type=int, default=64, help="rows sampled at once (ours)")
    parser.add_argument("--reference-batch", type=int, default=None, help="rows sampled at once by transformers (default: --batch-size)")
    parser.add_argument("--prompt", type=int, default=64, help="prompt length in tokens")
    parser.add_argument("--new-tokens", type=int, default=64, help="sampled tokens per row")
    parser.add_argument("--preset", default=None, help="with --no-reference: time this released architecture (random weights), e.g. pythia_1b")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="compute dtype (ours)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and prompts")


def measure(args: argparse.Namespace, bench) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from emergence_jax.errors import UserError
    from emergence_jax.models.sampling import generate

    rng = np.random.default_rng(args.seed)
    dtype = getattr(jnp, args.dtype)
    if args.preset is not None and not bench.no_reference:
        raise UserError("bench sample --preset times our side only; add --no-reference")
    torch_model = None
    if args.preset is not None:
        from emergence_jax.models import build_model, count_params
        from emergence_jax.models.presets import preset

        config = preset(args.preset)
        model = build_model(config, dtype=dtype, seed=args.seed)
        vocab, label = config.vocab_size, f"{args.preset} ({count_params(config) / 1e9:.2f}B params)"
    else:
        import torch
        import transformers

        from emergence_jax.bench.harness import set_torch_threads
        from emergence_jax.checkpoints.hf import load_hf_model

        set_torch_threads(bench.threads)
        torch.manual_seed(args.seed)
        hf_config = transformers.LlamaConfig(
            vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 8 // 3, num_hidden_layers=args.layers,
            num_attention_heads=max(1, args.hidden // 64), max_position_embeddings=args.prompt + args.new_tokens + 64,
            bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
        )
        torch_model = transformers.LlamaForCausalLM(hf_config).eval()
        with tempfile.TemporaryDirectory() as folder:
            torch_model.save_pretrained(folder)
            model = load_hf_model(folder, dtype=dtype, progress=False)
        vocab = args.vocab
        label = f"LLaMA hidden={args.hidden} layers={args.layers} vocab={args.vocab}"

    prompts = rng.integers(3, vocab, size=(args.batch_size, args.prompt)).tolist()
    calls = iter(range(1 << 30))

    def ours():
        out = generate(model, prompts, max_new_tokens=args.new_tokens, temperature=1.0, rng=jax.random.key(next(calls)), eos_id=None)
        return np.asarray(out)

    ref_batch = args.reference_batch or args.batch_size
    reference = None
    if torch_model is not None and not bench.no_reference:
        import torch

        ref_prompts = torch.tensor(rng.integers(3, vocab, size=(ref_batch, args.prompt)))

        def reference():
            with torch.inference_mode():
                out = torch_model.generate(
                    input_ids=ref_prompts, attention_mask=torch.ones_like(ref_prompts), do_sample=True, temperature=1.0, top_k=0,
                    top_p=1.0, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, pad_token_id=0,
                )
            if out.shape[1] - args.prompt != args.new_tokens:
                raise RuntimeError(f"transformers sampled {out.shape[1] - args.prompt} tokens, not {args.new_tokens}")

    bench.say(f"{label}; prompt {args.prompt} tokens, {args.new_tokens} sampled tokens per row, temperature 1; "
              f"batch {args.batch_size} (reference {ref_batch}); device {jax.devices()[0].platform}")
    name = f"sampling, batch {args.batch_size}" + (f" (reference batch {ref_batch})" if ref_batch != args.batch_size else "")
    bench.compare(name, "tokens/s", args.batch_size * args.new_tokens, ours, reference, reference_work=ref_batch * args.new_tokens)
