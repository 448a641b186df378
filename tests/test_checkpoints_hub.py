"""`hf://ORG/NAME@REVISION` checkpoints, offline: a local HF cache laid out as huggingface_hub lays
it out (models--ORG--NAME/snapshots/<commit>/..., refs/<revision>) resolves each revision to its own
snapshot, which then loads with the same logits as transformers; a revision that is not cached is a
one-line UserError. No network: HF_HUB_OFFLINE=1."""

import numpy as np
import pytest

from emergence_jax.checkpoints.hub import allow_patterns, parse_hub_spec, resolve_model_path
from emergence_jax.errors import UserError

REPO = "EleutherAI/pythia-410m"
COMMITS = {"step3000": "a" * 40, "main": "b" * 40}


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A pre-filled HF cache with two revisions of REPO holding different tiny GPT-NeoX weights."""
    from emergence_jax.checkpoints.testing import tiny_hf_checkpoint

    repo = tmp_path / "hub" / ("models--" + REPO.replace("/", "--"))
    models = {}
    for seed, (revision, commit) in enumerate(COMMITS.items()):
        models[revision] = tiny_hf_checkpoint(repo / "snapshots" / commit, "gpt_neox", seed=seed)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return repo, models


def test_revisions_resolve_offline_to_their_snapshots_and_load(hub_cache):
    import torch

    from emergence_jax.checkpoints.hf import load_hf_model

    repo, models = hub_cache
    assert resolve_model_path(f"hf://{REPO}@step3000") == repo / "snapshots" / COMMITS["step3000"]
    assert resolve_model_path(f"hf://{REPO}") == repo / "snapshots" / COMMITS["main"]
    assert resolve_model_path(f"hf://{REPO}@{COMMITS['main']}") == repo / "snapshots" / COMMITS["main"]
    ids = np.array([[5, 9, 17, 3, 100, 42]])
    model = load_hf_model(resolve_model_path(f"hf://{REPO}@step3000"), progress=False)
    with torch.no_grad():
        expected = models["step3000"](torch.tensor(ids)).logits.numpy()
        other = models["main"](torch.tensor(ids)).logits.numpy()
    logits = np.asarray(model(ids))
    np.testing.assert_allclose(logits, expected, atol=1e-4)
    assert np.abs(logits - other).max() > 1e-2  # the revisions really are different weights


def test_local_paths_pass_through(tmp_path):
    assert resolve_model_path(str(tmp_path)) == tmp_path
    assert resolve_model_path(tmp_path / "x") == tmp_path / "x"


@pytest.mark.parametrize(
    "spec, message",
    [
        (f"hf://{REPO}@step9999", "is not in the local HF cache"),
        ("hf://EleutherAI/pythia-1b@step3000", "is not in the local HF cache"),
        ("hf://a/b/c", "expected hf://ORG/NAME"),
        (f"hf://{REPO}@", "expected hf://ORG/NAME"),
        ("hf://", "expected hf://ORG/NAME"),
    ],
)
def test_bad_or_uncached_specs_are_user_errors(hub_cache, spec, message):
    with pytest.raises(UserError, match=message):
        resolve_model_path(spec)


def test_spec_parsing_and_file_choice():
    assert parse_hub_spec("hf://EleutherAI/pythia-410m@step3000") == ("EleutherAI/pythia-410m", "step3000")
    assert parse_hub_spec("hf://gpt2") == ("gpt2", None)
    pythia_step = ["config.json", "pytorch_model.bin", "tokenizer.json", "special_tokens_map.json"]
    assert "pytorch_model*.bin" in allow_patterns(pythia_step) and "*.safetensors" not in allow_patterns(pythia_step)
    both = ["config.json", "model.safetensors", "pytorch_model.bin"]
    assert "*.safetensors" in allow_patterns(both) and not any(p.endswith(".bin") for p in allow_patterns(both))
