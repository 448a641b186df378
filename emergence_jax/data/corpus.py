"""A held-out pretraining-loss corpus: documents -> tokens -> fixed-length packed rows.

Packing (deterministic: sources in the order given, documents in source order, no shuffling):
- Each document becomes `[bos] + tokenizer.encode(text) + [eos]` (a separator is left out when the
  tokenizer has none, and EOS is left out when it is the same token as BOS, as in GPT-NeoX, so
  documents are separated by one token); documents are concatenated into one token stream.
- The stream is cut into rows of `sequence_length` tokens with stride `sequence_length - 1`
  (consecutive rows share one token). A row predicts its tokens 2..L from the ones before, so
  every stream token after the first is scored exactly once, BOS/EOS included, with no masking;
  attention is causal within a row and crosses document boundaries, as in packed pretraining.
  The loss is the mean over all scored positions of all rows.
- The last row holds what is left and is right-padded with 0; `lengths[i]` is the number of real
  tokens in row i. `max_tokens` caps the number of scored tokens (the stream is cut after
  `max_tokens + 1` tokens).
- `text_bytes` is the UTF-8 size of the text behind the scored tokens (a document cut by
  `max_tokens`, or whose first token opens the stream, counts in proportion to its scored text
  tokens), so bits/byte = total scored nats / (ln 2 * text_bytes).

Sources: local `.txt` files (one document each), `.jsonl` files (one document per line, in field
`text_field`), folders of such files (sorted by name), or the name of a TFDS dataset prepared in
array_record format under `data_dir` (`tfds build --file_format=array_record`; TFRecord files
would need TensorFlow to read).
"""

from __future__ import annotations

import dataclasses
import json
import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np
from etils import epath

from emergence_jax.errors import UserError


class Tokenizer(Protocol):
    bos_id: int | None
    eos_id: int | None

    def encode(self, text: str) -> list[int]: ...


@dataclasses.dataclass(frozen=True)
class PretrainCorpus:
    """Packed rows `sequences` int32[N, sequence_length] with real-token counts `lengths` int[N]."""

    name: str
    sequences: np.ndarray
    lengths: np.ndarray
    text_bytes: int  # UTF-8 bytes of text behind the scored tokens (for bits/byte)
    num_documents: int  # documents with at least one token in a row

    @property
    def num_scored_tokens(self) -> int:
        return int(np.sum(self.lengths - 1))


def _documents_from_file(path: epath.Path, text_field: str) -> Iterator[str]:
    if path.suffix == ".txt":
        yield path.read_text(encoding="utf-8")
        return
    if path.suffix != ".jsonl":
        raise UserError(f"{path}: corpus files must be .txt (one document) or .jsonl (one document per line)")
    with path.open(encoding="utf-8") as f:
        for line_number, line in enumerate(f):
            if not line.strip():
                continue
            try:
                text = json.loads(line)[text_field]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise UserError(f"{path}: line {line_number + 1} has no '{text_field}' field; pass the right --text-field") from err
            if not isinstance(text, str):
                raise UserError(f"{path}: line {line_number + 1}: '{text_field}' is not a string")
            yield text


def _documents_from_tfds(name: str, *, data_dir: str | None, split: str, text_field: str) -> Iterator[str]:
    import tensorflow_datasets as tfds

    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as err:  # noqa: BLE001 - TFDS raises many types for "not there"
        raise UserError(
            f"corpus '{name}': not a local .txt/.jsonl file or folder, nor a TFDS dataset prepared in array_record "
            f"format under {data_dir or 'the default TFDS data_dir'} with split '{split}' ({type(err).__name__}: {err})"
        ) from err
    for index in range(len(source)):
        example = source[index]
        if text_field not in example:
            raise UserError(f"corpus '{name}' has no field '{text_field}'; choose one of {', '.join(example)}")
        text = example[text_field]
        yield text.decode("utf-8") if isinstance(text, bytes) else str(text)


def read_documents(source: str, *, text_field: str = "text", data_dir: str | None = None, split: str = "validation") -> Iterator[str]:
    """Documents of `source` in order (see the module docstring for what `source` may be)."""
    path = epath.Path(source)
    if path.is_dir():
        files = sorted(child for child in path.iterdir() if child.suffix in (".txt", ".jsonl"))
        if not files:
            raise UserError(f"{path}: no .txt or .jsonl files in this folder")
        for file in files:
            yield from _documents_from_file(file, text_field)
    elif path.is_file():
        yield from _documents_from_file(path, text_field)
    else:
        yield from _documents_from_tfds(source, data_dir=data_dir, split=split, text_field=text_field)


def pack_documents(
    documents: Iterable[str], tokenizer: Tokenizer, *, sequence_length: int, max_tokens: int | None = None, name: str = ""
) -> PretrainCorpus:
    """Tokenize and pack `documents` (see the module docstring)."""
    if sequence_length < 2:
        raise UserError(f"sequence_length must be >= 2 (one context token and one scored token), got {sequence_length}")
    if max_tokens is not None and max_tokens < 1:
        raise UserError(f"max_tokens must be positive, got {max_tokens}")
    stream_limit = None if max_tokens is None else max_tokens + 1
    prefix = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    suffix = [tokenizer.eos_id] if tokenizer.eos_id is not None and tokenizer.eos_id != tokenizer.bos_id else []
    stream: list[int] = []
    # Per document: (stream index of its first text token, number of text tokens, UTF-8 bytes).
    spans: list[tuple[int, int, int]] = []
    for text in documents:
        if stream_limit is not None and len(stream) >= stream_limit:
            break
        text_ids = tokenizer.encode(text)
        spans.append((len(stream) + len(prefix), len(text_ids), len(text.encode("utf-8"))))
        stream.extend(prefix + text_ids + suffix)
    if stream_limit is not None:
        del stream[stream_limit:]
    if len(stream) < 2:
        raise UserError(f"corpus {name or ''}: {len(stream)} token(s), nothing to score; give it more text")
    stride = sequence_length - 1
    num_rows = -(-(len(stream) - 1) // stride)
    sequences = np.zeros((num_rows, sequence_length), dtype=np.int32)
    lengths = np.zeros(num_rows, dtype=np.int64)
    tokens = np.asarray(stream, dtype=np.int32)
    for row in range(num_rows):
        piece = tokens[row * stride : row * stride + sequence_length]
        sequences[row, : len(piece)] = piece
        lengths[row] = len(piece)
    text_bytes, num_documents = 0.0, 0
    for start, length, size in spans:
        if start >= len(stream):
            break
        num_documents += 1
        scored = max(0, min(start + length, len(stream)) - max(start, 1))  # stream[0] is never scored
        text_bytes += size if scored == length else size * scored / length
    return PretrainCorpus(name=name, sequences=sequences, lengths=lengths, text_bytes=round(text_bytes), num_documents=num_documents)


def load_pretrain_corpus(
    sources: str | Sequence[str],
    *,
    tokenizer: Tokenizer,
    sequence_length: int,
    max_tokens: int | None = None,
    text_field: str = "text",
    data_dir: str | None = None,
    split: str = "validation",
) -> PretrainCorpus:
    """Read `sources` in order and pack them; the one call the pretraining-loss evaluation needs.

    The corpus `name` (written as `loss_corpus` in results) is the sources joined by "+".
    """
    sources = [sources] if isinstance(sources, str) else list(sources)
    if not sources:
        raise UserError("no corpus given; pass .txt/.jsonl files, folders or a TFDS dataset name")
    documents = itertools.chain.from_iterable(
        read_documents(source, text_field=text_field, data_dir=data_dir, split=split) for source in sources
    )
    return pack_documents(documents, tokenizer, sequence_length=sequence_length, max_tokens=max_tokens, name="+".join(sources))
