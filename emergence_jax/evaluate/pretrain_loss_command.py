"""`emergence-jax pretrain-loss`: a checkpoint's loss on a held-out text corpus, in nats/token.

Writes a JSON object (`--out FILE.json`) with `model`, `loss_corpus`, `pretrain_loss` (nats/token),
`tokens`, `bits_per_byte` and `text_bytes`; `emergence-jax evaluate --pretrain-loss FILE.json`
copies the loss into every results row it writes. `measure_pretrain_loss` is the same measurement
on a model in memory. With `--mesh` the model is loaded onto the mesh; in a multi-host job every
process runs the command and only process 0 writes the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emergence_jax.errors import UserError
from emergence_jax.io import write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from emergence_jax.evaluate.loading import add_device_arguments

    parser.add_argument("--model", required=True, help="checkpoint folder (Hugging Face config.json + safetensors + tokenizer)")
    parser.add_argument("--corpus", required=True, nargs="+", help="held-out text: .txt / .jsonl files, folders of them, or a prepared TFDS dataset name")
    parser.add_argument("--text-field", default="text", help="field holding the text in .jsonl lines / TFDS examples")
    parser.add_argument("--data-dir", default=None, help="TFDS data folder (for a TFDS corpus)")
    parser.add_argument("--split", default="validation", help="TFDS split (for a TFDS corpus)")
    parser.add_argument("--out", required=True, help="JSON file to write the loss to")
    parser.add_argument("--model-id", help="checkpoint id written to the output (default: the model folder's name)")
    parser.add_argument("--sequence-length", type=int, default=2049, help="tokens per packed row, scoring all but the first (capped at the model's context + 1)")
    parser.add_argument("--max-tokens", type=int, default=None, help="score at most this many tokens of the corpus")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    add_device_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import jax

    from emergence_jax.evaluate.loading import check_model_folder, load_model_for_evaluation, mesh_from_arguments

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise UserError(f"--out {out}: the pretraining loss is written as JSON; use a .json file name")
    check_model_folder(args.model)
    mesh = mesh_from_arguments(args)
    loaded = load_model_for_evaluation(args.model, compute_dtype=args.compute_dtype, param_dtype=args.param_dtype, mesh=mesh)
    payload = measure_pretrain_loss(
        loaded, args.corpus, model_id=args.model_id or loaded.model_id, text_field=args.text_field, data_dir=args.data_dir,
        split=args.split, sequence_length=args.sequence_length, max_tokens=args.max_tokens, batch_size=args.batch_size, progress=True,
    )
    if jax.process_index() == 0:
        write_json(out, payload)
        print(f"{payload['model']}: {payload['pretrain_loss']:.4f} nats/token over {payload['tokens']} tokens -> {out}")
    return 0


def measure_pretrain_loss(
    loaded,
    corpus_paths,
    *,
    model_id: str,
    text_field: str = "text",
    data_dir: str | None = None,
    split: str = "validation",
    sequence_length: int = 2049,
    max_tokens: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> dict:
    """The `pretrain-loss` JSON payload (loss in nats/token, tokens, bits/byte, corpus name) of a
    `LoadedModel` (`evaluate.loading`) on a held-out corpus; `sequence_length` is capped at the
    model's context + 1. Every process of a multi-host job calls it and gets the same payload."""
    import jax

    from emergence_jax.data.corpus import load_pretrain_corpus
    from emergence_jax.evaluate.pretrain_loss import pretrain_loss

    sequence_length = min(sequence_length, loaded.max_length + 1)
    corpus = load_pretrain_corpus(
        list(corpus_paths), tokenizer=loaded.tokenizer, sequence_length=sequence_length, max_tokens=max_tokens,
        text_field=text_field, data_dir=data_dir, split=split,
    )
    result = pretrain_loss(
        loaded.scorer, corpus.sequences, lengths=corpus.lengths, text_bytes=corpus.text_bytes,
        batch_size=batch_size, progress=progress and jax.process_index() == 0,
    )
    return {
        "model": model_id,
        "loss_corpus": corpus.name,
        "pretrain_loss": result.nats_per_token,
        "tokens": result.tokens,
        "bits_per_byte": result.bits_per_byte,
        "text_bytes": result.text_bytes,
        "sequence_length": sequence_length,
    }
