"""Hugging Face Hub checkpoints by revision: `hf://ORG/NAME@REVISION` -> a local folder.

Pythia's 154 intermediate checkpoints, for example, are revisions (`step3000`) of one Hub repo, so
`--model hf://EleutherAI/pythia-410m@step3000` names a pre-emergence checkpoint without a manual
download. `resolve_model_path` fetches only what loading reads (config, weights, tokenizer files)
with `huggingface_hub.snapshot_download` into the standard HF cache and returns the snapshot
folder; anything else passes through as a local path. Offline (`HF_HUB_OFFLINE=1`) the snapshot
must already be in the cache (`HF_HUB_CACHE`, default `~/.cache/huggingface/hub`), where
`refs/<revision>` names the snapshot of a branch or tag revision.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from emergence_jax.errors import UserError

PREFIX = "hf://"
# What `load_hf_model` and the tokenizer loader read; PyTorch .bin weights only when a revision has
# no safetensors (Pythia's intermediate checkpoints).
METADATA_PATTERNS = ("*.json", "tokenizer*", "*.model", "vocab*", "merges.txt")
SAFETENSORS_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
TORCH_PATTERNS = ("pytorch_model*.bin", "pytorch_model*.bin.index.json")


def is_hub_spec(spec: str | os.PathLike) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_hub_spec(spec: str) -> tuple[str, str | None]:
    """(repo id, revision or None for the default branch) of `hf://ORG/NAME[@REVISION]`."""
    body = spec[len(PREFIX):]
    repo_id, _, revision = body.partition("@")
    parts = repo_id.split("/")
    if not repo_id or len(parts) > 2 or not all(parts) or (_ and not revision):
        raise UserError(f"--model {spec}: expected hf://ORG/NAME or hf://ORG/NAME@REVISION, e.g. hf://EleutherAI/pythia-410m@step3000")
    return repo_id, revision or None


def allow_patterns(repo_files: Iterable[str]) -> list[str]:
    """The files of a revision worth fetching: safetensors weights when there are any, else .bin."""
    has_safetensors = any(name.endswith(".safetensors") for name in repo_files)
    return [*METADATA_PATTERNS, *(SAFETENSORS_PATTERNS if has_safetensors else TORCH_PATTERNS)]


def _offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE once, when it is first imported.
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_model_path(spec: str | os.PathLike) -> Path:
    """A local checkpoint folder for `spec`: an `hf://` spec is fetched (or, offline, found in the
    HF cache) and its snapshot folder returned; anything else is returned as a `Path` unchanged."""
    if not is_hub_spec(spec):
        return Path(spec)
    import huggingface_hub
    from huggingface_hub import errors

    repo_id, revision = parse_hub_spec(str(spec))
    cache_dir = os.environ.get("HF_HUB_CACHE") or None
    where = f"{repo_id} at revision {revision or 'main'}"
    try:
        if _offline():
            folder = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True)
        else:
            files = huggingface_hub.list_repo_files(repo_id, revision=revision)
            folder = huggingface_hub.snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=allow_patterns(files))
    except errors.RevisionNotFoundError:
        raise UserError(f"--model {spec}: the Hub repo {repo_id} has no revision {revision!r}; list them with huggingface_hub.list_repo_refs") from None
    except errors.RepositoryNotFoundError:
        raise UserError(f"--model {spec}: no Hub repo {repo_id} (or it is gated: accept its licence and set HF_TOKEN)") from None
    except errors.LocalEntryNotFoundError:
        raise UserError(
            f"--model {spec}: {where} is not in the local HF cache ({cache_dir or huggingface_hub.constants.HF_HUB_CACHE}) "
            "and HF_HUB_OFFLINE is set (or the Hub is unreachable); fetch it once online"
        ) from None
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise UserError(f"--model {spec}: {where} has no config.json; it is not a transformers checkpoint")
    return folder
