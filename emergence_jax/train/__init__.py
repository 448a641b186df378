"""Finetuning: the sharded train step (optax), LoRA, batching, preemption-safe checkpoints, the loop."""
