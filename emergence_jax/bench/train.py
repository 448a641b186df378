"""`emergence-jax bench train`: finetuning train-step throughput beside PyTorch/transformers.

Both sides train the same random LLaMA (transformers builds it, our loader reads its safetensors)
on the same padded batches with the same loss (target tokens only), AdamW, gradient clipping and
float32 weights, in this run. Throughput is (rows x row length) tokens per second of wall time
over `--steps` steps after one warm-up step (our compile time is reported apart); the losses of
the last step are printed side by side as a check that both sides did the same work. MFU uses
6 x parameters x tokens (+ attention) model FLOPs and is shown when `--peak-tflops` is given
(the accelerator's dense peak at the compute dtype).
"""

from __future__ import annotations

import argparse
import tempfile
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hidden", type=int, default=256, help="model width")
    parser.add_argument("--layers", type=int, default=4, help="decoder layers")
    parser.add_argument("--vocab", type=int, default=4096, help="vocabulary size")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step, both sides")
    parser.add_argument("--length", type=int, default=256, help="tokens per row")
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32", help="our compute dtype (torch: float32)")
    parser.add_argument("--remat", action="store_true", help="our step with rematerialisation")
    parser.add_argument("--skip-torch", action="store_true", help="only our step (e.g. sizes too large for CPU torch)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s, to report MFU")
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


def _torch_steps(torch_model, batch, args) -> tuple[float, float]:
    """(seconds for args.steps steps after a warm-up, last loss) of the transformers step."""
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
    step()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    return time.perf_counter() - started, loss


def _jax_steps(folder, batch, args) -> tuple[float, float, float]:
    """(compile+first step seconds, seconds for args.steps steps, last loss) of our step."""
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
    training = setup_training(model, build_optimizer(optim, args.steps + 1), mesh, remat=args.remat)
    device_batch = {k: jax.device_put(v[None], training.step.batch_sharding) for k, v in batch.items()}
    with jax.set_mesh(mesh):
        started = time.perf_counter()
        training.state, metrics = training.step(training.state, training.frozen, device_batch)
        jax.block_until_ready(metrics)
        first = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(args.steps):
            training.state, metrics = training.step(training.state, training.frozen, device_batch)
        loss = float(metrics["loss"])
    return first, time.perf_counter() - started, loss


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np
    import torch
    import transformers

    from emergence_jax.checkpoints.hf import read_hf_config
    from emergence_jax.models import count_params

    torch.manual_seed(args.seed)
    hf_config = transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.hidden, intermediate_size=args.hidden * 11 // 4,
        num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
        max_position_embeddings=args.length, tie_word_embeddings=False,
    )
    torch_model = transformers.LlamaForCausalLM(hf_config)
    batch = _batch(args, np.random.default_rng(args.seed))
    tokens = args.batch_size * args.length * args.steps
    with tempfile.TemporaryDirectory() as folder:
        torch_model.save_pretrained(folder)
        params = count_params(read_hf_config(folder))
        first, jax_seconds, jax_loss = _jax_steps(folder, batch, args)
    devices = jax.devices()
    print(f"LLaMA hidden={args.hidden} layers={args.layers} vocab={args.vocab} ({params / 1e6:.1f}M params); "
          f"batch {args.batch_size} x {args.length} tokens; {args.steps} timed steps; AdamW + clipping, fp32 weights")
    print(f"jax: {len(devices)} x {devices[0].device_kind}, compute {args.compute_dtype}{', remat' if args.remat else ''}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32")
    jax_rate = tokens / jax_seconds
    flops_per_token = 6 * params + 12 * args.layers * args.hidden * args.length
    print(f"{'side':<24}{'tokens/s':>12}{'step s':>10}{'last loss':>12}{'compile s':>11}")
    print(f"{'emergence_jax':<24}{jax_rate:>12.0f}{jax_seconds / args.steps:>10.3f}{jax_loss:>12.4f}{first:>11.1f}")
    if args.peak_tflops:
        print(f"MFU {100 * jax_rate * flops_per_token / (args.peak_tflops * 1e12):.1f}% "
              f"({flops_per_token * jax_rate / 1e12:.2f} model TFLOP/s of {args.peak_tflops} peak)")
    if devices[0].platform != "cpu":
        stats = devices[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            print(f"peak device memory {stats['peak_bytes_in_use'] / 2**30:.2f} GiB")
    if not args.skip_torch:
        torch_seconds, torch_loss = _torch_steps(torch_model, batch, args)
        torch_rate = tokens / torch_seconds
        print(f"{'transformers (torch)':<24}{torch_rate:>12.0f}{torch_seconds / args.steps:>10.3f}{torch_loss:>12.4f}{'':>11}")
        print(f"ratio (jax / torch tokens/s): {jax_rate / torch_rate:.2f}")
    return 0
