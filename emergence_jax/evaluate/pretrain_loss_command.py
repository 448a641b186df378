"""`emergence-jax pretrain-loss`: a checkpoint's loss on a held-out text corpus, in nats/token.

Writes a JSON object (`--out FILE.json`) with `model`, `loss_corpus`, `pretrain_loss` (nats/token),
`tokens`, `bits_per_byte` and `text_bytes`; `emergence-jax evaluate --pretrain-loss FILE.json`
copies the loss into every results row it writes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from emergence_jax.errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    parser.add_argument("--compute-dtype", choices=("float32", "bfloat16"), default="float32", help="activation dtype")


def write_json_atomically(path: Path, payload: dict) -> None:
    """Write `payload` to `path` through a temporary file and a rename: never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8")
    try:
        with handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def run(args: argparse.Namespace) -> int:
    from emergence_jax.data.corpus import load_pretrain_corpus
    from emergence_jax.evaluate.loading import check_model_folder, load_model_for_evaluation
    from emergence_jax.evaluate.pretrain_loss import pretrain_loss

    out = Path(args.out)
    if out.suffix.lower() != ".json":
        raise UserError(f"--out {out}: the pretraining loss is written as JSON; use a .json file name")
    check_model_folder(args.model)
    loaded = load_model_for_evaluation(args.model, compute_dtype=args.compute_dtype)
    sequence_length = min(args.sequence_length, loaded.max_length + 1)
    corpus = load_pretrain_corpus(
        args.corpus, tokenizer=loaded.tokenizer, sequence_length=sequence_length, max_tokens=args.max_tokens,
        text_field=args.text_field, data_dir=args.data_dir, split=args.split,
    )
    result = pretrain_loss(
        loaded.scorer, corpus.sequences, lengths=corpus.lengths, text_bytes=corpus.text_bytes,
        batch_size=args.batch_size, progress=True,
    )
    payload = {
        "model": args.model_id or loaded.model_id,
        "loss_corpus": corpus.name,
        "pretrain_loss": result.nats_per_token,
        "tokens": result.tokens,
        "bits_per_byte": result.bits_per_byte,
        "text_bytes": result.text_bytes,
        "sequence_length": sequence_length,
    }
    write_json_atomically(out, payload)
    print(f"{payload['model']}: {result.nats_per_token:.4f} nats/token over {result.tokens} tokens -> {out}")
    return 0
