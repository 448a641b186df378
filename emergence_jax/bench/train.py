"""`emergence-jax bench train`: finetuning train-step throughput beside PyTorch/transformers.

Both sides train the same random LLaMA (transformers builds it, our loader reads its safetensors)
on the same padded batch with the same loss (target tokens only), AdamW, gradient clipping and
float32 weights, in this process with equal threads. Each timed round runs `--steps-per-round`
steps per side, interleaved (`emergence_jax.bench.harness`); throughput is (rows x row length)
tokens per second. Both sides take the same number of steps from the same weights, so their final
losses (kept in the JSON) should agree closely: a check that they did the same work. MFU uses
6 x parameters x tokens (+ attention) model FLOPs and is reported on accelerators (peak from the
device kind, or `--peak-tflops`).
"""

from __future__ import annotations

import argparse
import tempfile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step, both sides")
    parser.add_argument("--length", type=int, default=256, help="tokens per row")
    parser.add_argument("--steps-per-round", type=int, default=2, help="optimizer steps per timed round and side")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32", help="our compute dtype (torch: float32)")
    parser.add_argument("--remat", action="store_true", help="our step with rematerialisation")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s for MFU (default: from the device kind)")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and tokens")


def _batch(args, rng):
    import numpy as np

    shape = (args.batch_size, args.length)
    lengths = rng.integers(args.length * 3 // 4, args.length + 1, args.batch_size)
    prompt = rng.integers(args.length // 4, args.length // 2, args.batch_size)
    positions = np.broadcast_to(np.arange(args.length), shape)
    attention = (positions < lengths[:, None]).astype(np.int32)
    return {
        "input_ids": (rng.integers(1, args.vocab, shape) * attention).astype(np.int32),
        "positions": positions.astype(np.int32).copy(),
        "attention_mask": attention,
        "loss_mask": (attention * (positions >= prompt[:, None])).astype(np.int32),
    }


def _torch_step(torch_model, batch, args):
    """A callable running `args.steps_per_round` transformers train steps; returns the last loss."""
    import torch

    optimizer = torch.optim.AdamW(torch_model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    ids = torch.as_tensor(batch["input_ids"], dtype=torch.long)
    mask = torch.as_tensor(batch["attention_mask"], dtype=torch.long)
    weights = torch.as_tensor(batch["loss_mask"][:, 1:], dtype=torch.float32)

    def step():
        logits = torch_model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")
        loss = (nll * weights.reshape(-1)).sum() / weights.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(torch_model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    torch_model.train()
    return lambda: [step() for _ in range(args.steps_per_round)][-1]


def _jax_step(folder, batch, args, total_steps: int):
    """A callable running `args.steps_per_round` of our train steps; returns the last loss."""
    import jax
    import jax.numpy as jnp

    from emergence_jax.checkpoints.hf import load_hf_model
    from emergence_jax.sharding import make_mesh
    from emergence_jax.train.config import OptimConfig
    from emergence_jax.train.optim import build_optimizer
    from emergence_jax.train.step import setup_training

    mesh = make_mesh(1, -1, 1)
    model = load_hf_model(folder, dtype=getattr(jnp, args.compute_dtype), mesh=mesh, progress=False)
    optim = OptimConfig(learning_rate=1e-4, schedule="constant", warmup_fraction=0.0, max_grad_norm=1.0)
    training = setup_training(model, build_optimizer(optim, total_steps), mesh, remat=args.remat)
    device_batch = {k: jax.device_put(v[None], training.step.batch_sharding) for k, v in batch.items()}

    def steps():
        with jax.set_mesh(mesh):
            for _ in range(args.steps_per_round):
                training.state, metrics = training.step(training.state, training.frozen, device_batch)
            return float(metrics["loss"])

    return steps


def measure(args: argparse.Namespace, bench) -> None:
    import jax
    import numpy as np
    import torch
    import transformers

    from emergence_jax.bench.harness import peak_flops, set_torch_threads
    from emergence_jax.checkpoints.hf import read_hf_config
    from emergence_jax.models import count_params

    set_torch_threads(bench.threads)
    torch.manual_seed(args.seed)
    hf_config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
        max_position_embeddings=args.length, tie_word_embeddings=False,
    )
    torch_model = transformers.LlamaForCausalLM(hf_config)
    batch = _batch(args, np.random.default_rng(args.seed))
    total_steps = (bench.rounds + 1) * args.steps_per_round
    with tempfile.TemporaryDirectory() as folder:
        torch_model.save_pretrained(folder)
        params = count_params(read_hf_config(folder))
        ours = _jax_step(folder, batch, args, total_steps)
    reference = None if bench.no_reference else _torch_step(torch_model, batch, args)
    devices = jax.devices()
    bench.say(f"LLaMA hidden={args.hidden} layers={args.layers} vocab={args.vocab} ({params / 1e6:.1f}M params); "
              f"batch {args.batch_size} x {args.length} tokens; {args.steps_per_round} steps per round; AdamW + clipping, fp32 weights; "
              f"jax: {len(devices)} x {devices[0].device_kind}, compute {args.compute_dtype}{', remat' if args.remat else ''}")
    losses = {}

    def run_ours():
        losses["ours"] = ours()

    def run_reference():
        losses["reference"] = reference()

    measured = bench.compare("train step", "tokens/s", args.steps_per_round * args.batch_size * args.length, run_ours,
                             run_reference if reference else None)
    measured.extra.update({f"final_loss_{side}": loss for side, loss in losses.items()})
    bench.say("final loss: " + ", ".join(f"{side} {loss:.4f}" for side, loss in losses.items()))
    peak = peak_flops(devices[0].device_kind, args.peak_tflops)
    if peak and devices[0].platform != "cpu":
        flops_per_token = 6 * params + 12 * args.layers * args.hidden * args.length
        measured.extra["mfu"] = measured.ours * flops_per_token / peak
        bench.say(f"MFU {measured.extra['mfu']:.1%} ({flops_per_token * measured.ours / 1e12:.2f} model TFLOP/s of {peak / 1e12:.0f} peak)")
        stats = devices[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            measured.extra["peak_device_bytes"] = stats["peak_bytes_in_use"]
            bench.say(f"peak device memory {stats['peak_bytes_in_use'] / 2**30:.2f} GiB")
