"""Checkpoints: Hugging Face folders <-> NNX models, Orbax param trees, tokenizers.

See `emergence_jax.models` for the API overview.
"""

from emergence_jax.checkpoints.hf import hf_name, load_hf_model, read_hf_config, save_hf_model

__all__ = ["hf_name", "load_hf_model", "read_hf_config", "save_hf_model"]
