"""Load a checkpoint folder once for evaluation: model, tokenizer, compiled scorer, context size."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from emergence_jax.errors import UserError
from emergence_jax.evaluate.scoring import QueryScorer, pure_language_model


@dataclasses.dataclass
class LoadedModel:
    """Everything an evaluation needs from one checkpoint folder."""

    model: Any
    config: Any
    tokenizer: Any
    scorer: QueryScorer
    max_length: int
    model_id: str


def check_model_folder(path: str | Path) -> Path:
    """`path` as a folder holding `config.json`, or a `UserError` saying what is missing (cheap:
    run it before reading data so a typo in `--model` fails first)."""
    folder = Path(path)
    if not folder.is_dir():
        raise UserError(f"--model {folder}: no such checkpoint folder; pass a folder with config.json and *.safetensors")
    if not (folder / "config.json").is_file():
        raise UserError(f"--model {folder}: config.json not found; pass a Hugging Face checkpoint folder")
    return folder


def load_model_for_evaluation(path: str | Path, *, compute_dtype: str = "float32") -> LoadedModel:
    """Read `path` (HF `config.json`, safetensors weights, tokenizer files) into a `LoadedModel`.

    `max_length` is the model's context window (`max_position_embeddings`), in tokens.
    """
    import jax.numpy as jnp

    from emergence_jax.checkpoints.hf import load_hf_model
    from emergence_jax.checkpoints.tokenizer import load_tokenizer

    folder = check_model_folder(path)
    model = load_hf_model(folder, dtype=getattr(jnp, compute_dtype))
    config = model.config
    tokenizer = load_tokenizer(folder)
    return LoadedModel(
        model=model,
        config=config,
        tokenizer=tokenizer,
        scorer=QueryScorer(pure_language_model(model)),
        max_length=int(config.max_position_embeddings),
        model_id=folder.resolve().name,
    )
