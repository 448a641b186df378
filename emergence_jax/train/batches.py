"""Finetuning batches from `FinetuneExample`s: tokenize, order deterministically, pad or pack.

The `D` examples are read as an endless stream of epochs; epoch `e` visits them in a permutation
drawn from `(seed, e)`, so the batch of any step is a pure function of the step number and resuming
needs only the step. With padding each row holds one example (right-padded); with packing rows are
filled greedily with whole examples in stream order, positions restarting at 0 for each example,
and `segment_ids` numbering the examples of a row 1, 2, ... (0 = padding) so that the model lets a
token attend only to its own example.

Each row has `input_ids`, `positions`, `segment_ids`, `attention_mask` (1 = real token) and
`loss_mask` (1 = a target token: the loss is taken on targets only, never on prompts or padding).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from emergence_jax.errors import UserError
from emergence_jax.train.config import DataConfig


@dataclasses.dataclass(frozen=True)
class TokenizedExample:
    """Token ids of a prompt (including any BOS) and of its target (including any EOS)."""

    prompt: tuple[int, ...]
    target: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.prompt) + len(self.target)


def tokenize_examples(examples: Sequence, tokenizer, *, max_length: int) -> list[TokenizedExample]:
    """`[bos] + prompt` and `target + [eos]`, cut to `max_length` tokens from the prompt's left.

    `tokenizer` has `.encode(text) -> list[int]` and `.bos_id` / `.eos_id` (None when absent).
    """
    if max_length < 2:
        raise UserError(f"data.max_length must be at least 2 tokens, got {max_length}")
    bos = [tokenizer.bos_id] if getattr(tokenizer, "bos_id", None) is not None else []
    eos = [tokenizer.eos_id] if getattr(tokenizer, "eos_id", None) is not None else []
    out = []
    for example in examples:
        prompt = bos + list(tokenizer.encode(example.prompt))
        target = (list(tokenizer.encode(example.target)) + eos)[: max_length - 1]
        prompt = prompt[len(prompt) + len(target) - max_length :] if len(prompt) + len(target) > max_length else prompt
        out.append(TokenizedExample(tuple(prompt), tuple(target)))
    return out


@dataclasses.dataclass(frozen=True)
class BatchPlan:
    """Which examples form each optimizer step's batch, and how many steps the run takes."""

    examples: tuple[TokenizedExample, ...]
    batch_size: int  # rows per optimizer step
    accumulation_steps: int
    row_length: int  # tokens per row
    epochs: int
    packing: bool
    seed: int
    pad_id: int = 0

    @cached_property
    def rows_per_epoch(self) -> int:
        """Rows in epoch 0 (packing makes later epochs differ by a row or so)."""
        return len(self._epoch_rows(0))

    @cached_property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.epochs * self.rows_per_epoch / self.batch_size))

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.row_length

    @cached_property
    def _rows_cache(self) -> dict[int, list[tuple[int, ...]]]:
        return {}

    def _epoch_rows(self, epoch: int) -> list[tuple[int, ...]]:
        if epoch not in self._rows_cache:
            self._rows_cache[epoch] = self._build_epoch_rows(epoch)
        return self._rows_cache[epoch]

    def _build_epoch_rows(self, epoch: int) -> list[tuple[int, ...]]:
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.examples))
        if not self.packing:
            return [(int(i),) for i in order]
        rows, current, used = [], [], 0
        for i in order:
            size = len(self.examples[i])
            if current and used + size > self.row_length:
                rows.append(tuple(current))
                current, used = [], 0
            current.append(int(i))
            used += size
        if current:
            rows.append(tuple(current))
        return rows

    def _stream_rows(self, start: int, count: int) -> list[tuple[int, ...]]:
        rows: list[tuple[int, ...]] = []
        epoch, offset = 0, start
        while True:
            epoch_rows = self._epoch_rows(epoch)
            if offset < len(epoch_rows):
                break
            offset -= len(epoch_rows)
            epoch += 1
        while len(rows) < count:
            rows.extend(epoch_rows[offset : offset + count - len(rows)])
            epoch, offset = epoch + 1, 0
            epoch_rows = self._epoch_rows(epoch)
        return rows

    def batch(self, step: int) -> dict[str, np.ndarray]:
        """int32 arrays shaped [accumulation_steps, batch_size / accumulation_steps, row_length]."""
        rows = self._stream_rows(step * self.batch_size, self.batch_size)
        shape = (self.batch_size, self.row_length)
        arrays = {
            "input_ids": np.full(shape, self.pad_id, np.int32),
            "positions": np.zeros(shape, np.int32),
            "segment_ids": np.zeros(shape, np.int32),
            "attention_mask": np.zeros(shape, np.int32),
            "loss_mask": np.zeros(shape, np.int32),
        }
        for r, row in enumerate(rows):
            t = 0
            for segment, i in enumerate(row, start=1):
                example = self.examples[i]
                n, p = len(example), len(example.prompt)
                arrays["input_ids"][r, t : t + n] = example.prompt + example.target
                arrays["positions"][r, t : t + n] = np.arange(n)
                arrays["segment_ids"][r, t : t + n] = segment
                arrays["attention_mask"][r, t : t + n] = 1
                arrays["loss_mask"][r, t + p : t + n] = 1
                t += n
        micro = self.batch_size // self.accumulation_steps
        return {key: value.reshape(self.accumulation_steps, micro, self.row_length) for key, value in arrays.items()}


def plan_batches(
    examples: Sequence[TokenizedExample],
    config: DataConfig,
    *,
    batch_size: int,
    accumulation_steps: int,
    data_parallel: int,
    seed: int,
    pad_id: int = 0,
) -> BatchPlan:
    """Batch layout and epoch count: `config.epochs` passes, raised to reach `config.min_steps`
    optimizer steps (so small D is not undertrained), capped at `config.max_epochs`."""
    if not examples:
        raise UserError("data: no finetuning examples; check data.task, data.data_dir and data.num_examples")
    if batch_size < 1 or accumulation_steps < 1 or batch_size % accumulation_steps:
        raise UserError(
            f"optim.batch_size {batch_size} must be a positive multiple of optim.accumulation_steps {accumulation_steps}"
        )
    micro = batch_size // accumulation_steps
    if micro % data_parallel:
        raise UserError(
            f"optim.batch_size / optim.accumulation_steps = {micro} rows is not divisible by the data parallelism "
            f"{data_parallel} (mesh.data x mesh.fsdp); change optim.batch_size or the mesh"
        )
    longest = max(len(e) for e in examples)
    row_length = config.max_length if config.packing else min(config.max_length, _round_up(longest, 8))
    plan = BatchPlan(tuple(examples), batch_size, accumulation_steps, row_length, 1, config.packing, seed, pad_id)
    steps_per_epoch = plan.rows_per_epoch / batch_size
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch) if config.min_steps else 0)
    epochs = max(1, min(epochs, config.max_epochs))
    return dataclasses.replace(plan, epochs=epochs)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
