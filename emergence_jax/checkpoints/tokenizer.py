"""The tokenizer stored in a checkpoint folder: `tokenizer.json` (via `tokenizers`) or
`tokenizer.model` (via `sentencepiece`), with special-token ids from the folder's configs.

`encode` adds no special tokens: callers prepend `bos_id` themselves where the model expects it
(LLaMA does, Pythia does not), so scoring and generation control exactly which tokens a row has.
"""

from __future__ import annotations

import os
from typing import Any

from etils import epath

from emergence_jax.errors import UserError
from emergence_jax.io import loads_json, read_json

MAX_CONFIG_BYTES = 16 << 20
"""Largest tokenizer_config.json / special_tokens_map.json / config.json read: 16 MiB."""

TOKENIZER_JSON = "tokenizer.json"
SENTENCEPIECE_MODEL = "tokenizer.model"


def _read_json(path: epath.Path) -> dict[str, Any]:
    """A tokenizer/model config file as a dict ({} when absent); strict JSON, a JSON object."""
    if not path.exists():
        return {}
    if isinstance(path, epath.Path) and not str(path).startswith(("gs://", "s3://")):
        data = read_json(os.fspath(path), max_bytes=MAX_CONFIG_BYTES, what="JSON config")
    else:
        data = loads_json(path.read_text(), source=str(path))
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object of settings, got a {type(data).__name__}; is this the model's {path.name}?")
    return data


def check_special_ids(tokenizer: Tokenizer, vocab_size: int, source: str) -> None:
    """Refuse special-token ids outside `vocab_size` (the model's embedding rows): scoring with one
    would read past the embedding table and give a NaN or meaningless loss."""
    for field in ("bos", "eos", "pad"):
        value = getattr(tokenizer, f"{field}_id")
        if value is not None and not 0 <= value < vocab_size:
            raise UserError(f"{source}: {field}_token id {value} is outside the vocabulary (size {vocab_size}); fix the tokenizer or config files")


def check_tokenizer_files(folder: str | os.PathLike, vocab_size: int) -> None:
    """The cheap checks of a checkpoint folder's tokenizer: its JSON configs are JSON objects and
    its special-token ids lie inside the model's `vocab_size` (nothing checked when it has no
    tokenizer; `load_tokenizer` says so when one is needed)."""
    root = epath.Path(folder)
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        _read_json(root / name)
    if (root / TOKENIZER_JSON).exists() or (root / SENTENCEPIECE_MODEL).exists():
        check_special_ids(load_tokenizer(root), vocab_size, str(root))


def _token_text(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or `{"content": ...}`."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Tokenizer:
    """Text <-> token ids for one checkpoint; `bos_id`, `eos_id`, `pad_id` are ints or None."""

    def __init__(self, backend: Any, kind: str, bos_id: int | None, eos_id: int | None, pad_id: int | None):
        self._backend = backend
        self.kind = kind  # "tokenizers" or "sentencepiece"
        self.bos_id = bos_id
        self.eos_id = eos_id
        self.pad_id = pad_id

    @property
    def vocab_size(self) -> int:
        if self.kind == "tokenizers":
            return self._backend.get_vocab_size(with_added_tokens=True)
        return self._backend.get_piece_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, without BOS/EOS."""
        if self.kind == "tokenizers":
            return self._backend.encode(text, add_special_tokens=False).ids
        return self._backend.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if self.kind == "tokenizers":
            return [e.ids for e in self._backend.encode_batch(texts, add_special_tokens=False)]
        return self._backend.encode(texts)

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if self.kind == "tokenizers":
            return self._backend.decode(ids, skip_special_tokens=skip_special_tokens)
        if skip_special_tokens:
            special = {self.bos_id, self.eos_id, self.pad_id}
            ids = [i for i in ids if i not in special]
        return self._backend.decode(ids)

    def token_id(self, token: str) -> int | None:
        if self.kind == "tokenizers":
            return self._backend.token_to_id(token)
        piece = self._backend.piece_to_id(token)
        return piece if self._backend.id_to_piece(piece) == token else None


def load_tokenizer(folder: str | os.PathLike) -> Tokenizer:
    """The tokenizer in a Hugging Face folder; `tokenizer.json` is preferred when both files exist.

    Special tokens come from `tokenizer_config.json` / `special_tokens_map.json` (by text), then
    from `config.json` (`bos_token_id`, ...), then from the sentencepiece model itself.
    """
    root = epath.Path(folder)
    json_path, sp_path = root / TOKENIZER_JSON, root / SENTENCEPIECE_MODEL
    if json_path.exists():
        import tokenizers

        try:
            backend = tokenizers.Tokenizer.from_str(json_path.read_text())
        except Exception as err:  # tokenizers raises its own Exception subclass
            raise UserError(f"{json_path}: not a tokenizers file ({err})") from None
        tokenizer = Tokenizer(backend, "tokenizers", None, None, None)
    elif sp_path.exists():
        import sentencepiece

        backend = sentencepiece.SentencePieceProcessor()
        try:
            backend.LoadFromSerializedProto(sp_path.read_bytes())
        except Exception as err:  # sentencepiece raises RuntimeError/OSError variants
            raise UserError(f"{sp_path}: not a sentencepiece model ({err})") from None
        ids = [backend.bos_id(), backend.eos_id(), backend.pad_id()]
        tokenizer = Tokenizer(backend, "sentencepiece", *(i if i >= 0 else None for i in ids))
    else:
        raise UserError(f"{root}: no {TOKENIZER_JSON} or {SENTENCEPIECE_MODEL}; copy the model's tokenizer files there")

    token_config = {**_read_json(root / "special_tokens_map.json"), **_read_json(root / "tokenizer_config.json")}
    model_config = _read_json(root / "config.json")
    for field in ("bos", "eos", "pad"):
        text = _token_text(token_config.get(f"{field}_token"))
        found = tokenizer.token_id(text) if text else None
        if found is None:
            value = model_config.get(f"{field}_token_id")
            found = value[0] if isinstance(value, list) and value else value
        if found is not None:
            if isinstance(found, bool) or not isinstance(found, int):
                raise UserError(f"{root}: {field}_token_id {found!r} is not a token id (an integer)")
            setattr(tokenizer, f"{field}_id", int(found))
    check_special_ids(tokenizer, tokenizer.vocab_size, str(root))
    return tokenizer
