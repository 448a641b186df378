"""Presets have the parameter counts of the transformers models they name, and the published sizes."""

import pytest

from emergence_jax.models import count_params
from emergence_jax.models.presets import PRESETS, PUBLISHED_PARAMS, preset
from emergence_jax.errors import UserError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


def _reference_count(config) -> int:
    """Parameters of the transformers model built on the meta device (shapes only, no memory)."""
    cls = transformers.LlamaForCausalLM if config.model_type == "llama" else transformers.GPTNeoXForCausalLM
    hf_config = transformers.AutoConfig.for_model(**config.to_hf())
    with torch.device("meta"):
        model = cls(hf_config)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_matches_transformers_and_published_size(name):
    config = preset(name)
    ours = count_params(config)
    assert ours == _reference_count(config)
    published, precision = PUBLISHED_PARAMS[name]
    assert abs(ours - published) <= precision


def test_unknown_preset_lists_names():
    with pytest.raises(UserError, match="pythia_70m"):
        preset("gpt5")
