"""Model configurations, and their translation to and from a Hugging Face `config.json`.

Configs are frozen (hashable) dataclasses: they sit in the model's static graph, so two models with
equal configs share compiled functions. Field names are ours and short (`num_layers`, `num_heads`);
`from_hf` / `to_hf` translate both the transformers 4.x (`rope_theta`, `rope_scaling`,
`rotary_pct`) and 5.x (`rope_parameters`) spellings.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from emergence_jax.errors import UserError


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """HF `rope_scaling` / `rope_parameters`: `"linear"` (positions / factor) or `"llama3"` (Llama 3.1)."""

    rope_type: str
    factor: float
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None

    SUPPORTED: ClassVar[tuple[str, ...]] = ("linear", "llama3")

    def to_hf(self) -> dict[str, Any]:
        out = {"rope_type": self.rope_type, "factor": self.factor}
        if self.rope_type == "llama3":
            out.update(
                low_freq_factor=self.low_freq_factor,
                high_freq_factor=self.high_freq_factor,
                original_max_position_embeddings=self.original_max_position_embeddings,
            )
        return out


def _token_ids(value: Any) -> int | tuple[int, ...] | None:
    if isinstance(value, list):
        return tuple(int(v) for v in value)
    return None if value is None else int(value)


@dataclasses.dataclass(frozen=True)
class _BaseConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    tie_word_embeddings: bool = False
    hidden_act: str = "silu"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None

    model_type: ClassVar[str] = ""

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_heads

    @property
    def rotary_dim(self) -> int:
        return self.head_dim

    def rope_inv_freq(self) -> np.ndarray:
        """Inverse RoPE frequencies (float32, length rotary_dim / 2), computed as transformers does."""
        dim = self.rotary_dim
        inv_freq = (1.0 / (np.float32(self.rope_theta) ** (np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / dim))).astype(np.float32)
        scaling = self.rope_scaling
        if scaling is None:
            return inv_freq
        if scaling.rope_type == "linear":
            return (inv_freq / np.float32(scaling.factor)).astype(np.float32)
        # llama3: leave high frequencies, divide low ones by factor, interpolate between.
        old_len = scaling.original_max_position_embeddings
        low_wavelen = old_len / scaling.low_freq_factor
        high_wavelen = old_len / scaling.high_freq_factor
        wavelen = 2 * np.pi / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / scaling.factor, inv_freq)
        smooth = (old_len / wavelen - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
        smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) & ~(wavelen > low_wavelen)
        return np.where(medium, smoothed, scaled).astype(np.float32)

    def _check(self) -> None:
        if self.hidden_size % self.num_heads:
            raise UserError(f"config: hidden_size {self.hidden_size} is not a multiple of num_attention_heads {self.num_heads}")

    def _common_hf(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model_type": self.model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": self.hidden_act,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id) if isinstance(self.eos_token_id, tuple) else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        return out


def _rope_fields(hf: dict[str, Any], *, theta_key: str = "rope_theta") -> tuple[float, RopeScaling | None, dict[str, Any]]:
    """(rope_theta, scaling, rope_parameters dict) from either transformers 4.x or 5.x keys."""
    params = dict(hf.get("rope_parameters") or {})
    legacy = hf.get("rope_scaling") or {}
    theta = params.get("rope_theta", hf.get(theta_key, hf.get("rope_theta", 10000.0)))
    spec = {**legacy, **params}
    rope_type = spec.get("rope_type", spec.get("type", "default"))
    if rope_type == "default":
        return float(theta), None, params
    if rope_type not in RopeScaling.SUPPORTED:
        raise UserError(
            f"config.json: rope type {rope_type!r} is not supported (supported: default, {', '.join(RopeScaling.SUPPORTED)})"
        )
    try:
        if rope_type == "linear":
            scaling = RopeScaling("linear", float(spec["factor"]))
        else:
            scaling = RopeScaling(
                "llama3",
                float(spec["factor"]),
                float(spec["low_freq_factor"]),
                float(spec["high_freq_factor"]),
                int(spec.get("original_max_position_embeddings", hf.get("max_position_embeddings", 2048))),
            )
    except KeyError as err:
        raise UserError(f"config.json: rope scaling {rope_type!r} lacks field {err.args[0]!r}") from None
    return float(theta), scaling, params


@dataclasses.dataclass(frozen=True)
class LlamaConfig(_BaseConfig):
    """LLaMA architecture: RMSNorm, rotate-half RoPE, SwiGLU MLP, multi-head or grouped-query attention."""

    num_key_value_heads: int | None = None
    head_dim_override: int | None = None
    rms_norm_eps: float = 1e-6
    attention_bias: bool = False
    mlp_bias: bool = False

    model_type: ClassVar[str] = "llama"

    @property
    def head_dim(self) -> int:
        return self.head_dim_override or self.hidden_size // self.num_heads

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_heads

    def __post_init__(self) -> None:
        if self.head_dim_override is None:
            self._check()
        if self.num_heads % self.kv_heads:
            raise UserError(f"config: num_attention_heads {self.num_heads} is not a multiple of num_key_value_heads {self.kv_heads}")

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> LlamaConfig:
        theta, scaling, _ = _rope_fields(hf)
        heads = int(hf["num_attention_heads"])
        head_dim = hf.get("head_dim")
        return cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=heads,
            num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim_override=int(head_dim) if head_dim and int(head_dim) != int(hf["hidden_size"]) // heads else None,
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            rope_theta=theta,
            rope_scaling=scaling,
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=bool(hf.get("attention_bias", False)),
            mlp_bias=bool(hf.get("mlp_bias", False)),
            hidden_act=str(hf.get("hidden_act", "silu")),
            bos_token_id=_token_ids(hf.get("bos_token_id")),
            eos_token_id=_token_ids(hf.get("eos_token_id")),
            pad_token_id=_token_ids(hf.get("pad_token_id")),
        )

    def to_hf(self) -> dict[str, Any]:
        out = self._common_hf()
        rope = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling is not None:
            rope = {**self.rope_scaling.to_hf(), "rope_theta": self.rope_theta}
        out.update(
            architectures=["LlamaForCausalLM"],
            num_key_value_heads=self.kv_heads,
            head_dim=self.head_dim,
            rms_norm_eps=self.rms_norm_eps,
            attention_bias=self.attention_bias,
            mlp_bias=self.mlp_bias,
            rope_theta=self.rope_theta,
            rope_scaling=self.rope_scaling.to_hf() if self.rope_scaling else None,
            rope_parameters=rope,
        )
        return out


@dataclasses.dataclass(frozen=True)
class GPTNeoXConfig(_BaseConfig):
    """GPT-NeoX (Pythia): LayerNorm with bias, fused per-head QKV, partial rotary, parallel residual."""

    rotary_pct: float = 0.25
    layer_norm_eps: float = 1e-5
    use_parallel_residual: bool = True
    attention_bias: bool = True
    hidden_act: str = "gelu"

    model_type: ClassVar[str] = "gpt_neox"

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_pct)

    def __post_init__(self) -> None:
        self._check()

    @classmethod
    def from_hf(cls, hf: dict[str, Any]) -> GPTNeoXConfig:
        theta, scaling, params = _rope_fields(hf, theta_key="rotary_emb_base")
        return cls(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_layers=int(hf["num_hidden_layers"]),
            num_heads=int(hf["num_attention_heads"]),
            rotary_pct=float(params.get("partial_rotary_factor", hf.get("rotary_pct", hf.get("partial_rotary_factor", 0.25)))),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            rope_theta=theta,
            rope_scaling=scaling,
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-5)),
            use_parallel_residual=bool(hf.get("use_parallel_residual", True)),
            attention_bias=bool(hf.get("attention_bias", True)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            hidden_act=str(hf.get("hidden_act", "gelu")),
            bos_token_id=_token_ids(hf.get("bos_token_id")),
            eos_token_id=_token_ids(hf.get("eos_token_id")),
            pad_token_id=_token_ids(hf.get("pad_token_id")),
        )

    def to_hf(self) -> dict[str, Any]:
        out = self._common_hf()
        rope = {"rope_type": "default", "rope_theta": self.rope_theta, "partial_rotary_factor": self.rotary_pct}
        if self.rope_scaling is not None:
            rope.update(self.rope_scaling.to_hf())
        out.update(
            architectures=["GPTNeoXForCausalLM"],
            rotary_pct=self.rotary_pct,
            rotary_emb_base=self.rope_theta,
            rope_scaling=self.rope_scaling.to_hf() if self.rope_scaling else None,
            rope_parameters=rope,
            layer_norm_eps=self.layer_norm_eps,
            use_parallel_residual=self.use_parallel_residual,
            attention_bias=self.attention_bias,
        )
        return out


ModelConfig = LlamaConfig | GPTNeoXConfig

CONFIG_CLASSES: dict[str, type[LlamaConfig] | type[GPTNeoXConfig]] = {
    "llama": LlamaConfig,
    "gpt_neox": GPTNeoXConfig,
}


# config.json field -> (kind, lowest, highest): sizes bounded so that a typo cannot make the
# loader allocate for hours (`num_hidden_layers: 1e9`); the largest open models sit far inside.
HF_FIELD_RANGES: dict[str, tuple[str, float, float]] = {
    "vocab_size": ("int", 1, 1 << 24),
    "hidden_size": ("int", 1, 1 << 17),
    "intermediate_size": ("int", 1, 1 << 20),
    "num_hidden_layers": ("int", 1, 4096),
    "num_attention_heads": ("int", 1, 4096),
    "num_key_value_heads": ("int", 1, 4096),
    "head_dim": ("int", 1, 1 << 14),
    "max_position_embeddings": ("int", 1, 1 << 24),
    "rope_theta": ("float", 1e-6, 1e12),
    "rotary_emb_base": ("float", 1e-6, 1e12),
    "rotary_pct": ("float", 1e-6, 1.0),
    "partial_rotary_factor": ("float", 1e-6, 1.0),
    "rms_norm_eps": ("float", 0.0, 1.0),
    "layer_norm_eps": ("float", 0.0, 1.0),
}
HF_REQUIRED = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
HF_BOOL_FIELDS = ("tie_word_embeddings", "use_parallel_residual", "attention_bias", "mlp_bias")
MAX_PARAMETERS = 2e12
"""Largest model accepted, in parameters (estimated from config.json before anything is allocated)."""


def _hf_number(hf: dict[str, Any], key: str, source: str) -> None:
    kind, low, high = HF_FIELD_RANGES[key]
    value = hf[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{source}: {key} must be a number, got {value!r}")
    if not np.isfinite(value):
        raise UserError(f"{source}: {key} must be finite, got {value!r}")
    if kind == "int" and value != int(value):
        raise UserError(f"{source}: {key} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise UserError(f"{source}: {key} = {value!r} is outside [{low}, {high}]; check the checkpoint's config.json")


def _token_id_check(hf: dict[str, Any], key: str, source: str) -> None:
    value = hf.get(key)
    if value is None:
        return
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, bool) or not isinstance(item, int):
            raise UserError(f"{source}: {key} must be a token id (an integer) or a list of them, got {value!r}")
        if key == "pad_token_id" and item < 0:
            continue  # some configs write -1 for "no padding token"
        if not 0 <= item < hf["vocab_size"]:
            raise UserError(f"{source}: {key} {item} is outside the vocabulary (vocab_size {hf['vocab_size']}); fix config.json")


def estimated_parameters(hf: dict[str, Any]) -> float:
    """Parameters of the transformer `hf` describes (embeddings, attention, MLP), before allocating."""
    hidden, layers, vocab = float(hf["hidden_size"]), float(hf["num_hidden_layers"]), float(hf["vocab_size"])
    heads = float(hf["num_attention_heads"])
    head_dim = float(hf.get("head_dim") or hidden / heads)
    kv_heads = float(hf.get("num_key_value_heads") or heads)
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * float(hf["intermediate_size"])
    embeddings = vocab * hidden * (1 if hf.get("tie_word_embeddings") else 2)
    return embeddings + layers * (attention + mlp)


def validate_hf_config(hf: Any, source: str = "config.json") -> None:
    """Check a parsed HF `config.json` before use: a JSON object, required sizes present, every
    number finite, whole where it counts something, within `HF_FIELD_RANGES`; token ids inside the
    vocabulary; at most `MAX_PARAMETERS` parameters. Any problem is a one-line `UserError`."""
    if not isinstance(hf, dict):
        raise UserError(f"{source}: expected a JSON object of model settings, got a {type(hf).__name__}; is this a Hugging Face config.json?")
    for key in HF_REQUIRED:
        if key not in hf:
            raise UserError(f"{source}: required field {key!r} is missing")
    for key in HF_FIELD_RANGES:
        if hf.get(key) is not None:
            _hf_number(hf, key, source)
    for key in HF_BOOL_FIELDS:
        if key in hf and hf[key] is not None and not isinstance(hf[key], bool):
            raise UserError(f"{source}: {key} must be true or false, got {hf[key]!r}")
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        _token_id_check(hf, key, source)
    for key in ("rope_scaling", "rope_parameters"):
        if hf.get(key) is not None:
            if not isinstance(hf[key], dict):
                raise UserError(f"{source}: {key} must be an object, got {type(hf[key]).__name__}")
            for name, value in hf[key].items():
                if name in ("factor", "low_freq_factor", "high_freq_factor", "rope_theta", "partial_rotary_factor", "original_max_position_embeddings"):
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value <= 0:
                        raise UserError(f"{source}: {key}.{name} must be a positive finite number, got {value!r}")
    if hf["hidden_size"] % hf["num_attention_heads"] and not hf.get("head_dim"):
        raise UserError(f"{source}: hidden_size {hf['hidden_size']} is not a multiple of num_attention_heads {hf['num_attention_heads']}")
    params = estimated_parameters(hf)
    if params > MAX_PARAMETERS:
        raise UserError(f"{source}: these sizes describe a model of ~{params:.3g} parameters, beyond the {MAX_PARAMETERS:.0e} limit; check hidden_size, num_hidden_layers, vocab_size")


def config_from_hf(hf: dict[str, Any], source: str = "config.json") -> ModelConfig:
    """Our config from a parsed HF `config.json` (checked by `validate_hf_config` first); one-line
    UserError for an unknown type, a missing field or an out-of-range value."""
    if not isinstance(hf, dict):
        validate_hf_config(hf, source)
    model_type = hf.get("model_type")
    if model_type not in CONFIG_CLASSES:
        raise UserError(
            f"{source}: model_type {model_type!r} is not supported (supported: {', '.join(sorted(CONFIG_CLASSES))})"
        )
    validate_hf_config(hf, source)
    try:
        return CONFIG_CLASSES[model_type].from_hf(hf)
    except KeyError as err:
        raise UserError(f"{source}: required field {err.args[0]!r} is missing") from None
