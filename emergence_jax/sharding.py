"""Device mesh and the logical-axis -> mesh-axis rules: the one place sharding is decided.

Model parameters carry *logical* axis names in their `out_sharding` metadata (Flax NNX's key), e.g.
a query projection kernel is `("embed", "heads", "head_dim")`. `DEFAULT_RULES` maps each logical
name to a mesh axis of a `("data", "fsdp", "tensor")` mesh; `param_shardings` turns a model's
variables into `NamedSharding`s under a mesh and rules. The default strategy is FSDP: the `embed`
dimension of every matrix is split over `fsdp`, the head/MLP/vocab dimensions over `tensor`, and
the batch over `data` x `fsdp`. A rule whose mesh axes do not divide a dimension is dropped for that
dimension (it stays replicated), so small or odd-shaped models still load on any mesh.

Rules are plain lists of `(logical_name, mesh_axis | tuple[mesh_axis, ...] | None)` so a YAML
config can override them (`rules_from_config`).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from emergence_jax.errors import UserError

MESH_AXES: tuple[str, str, str] = ("data", "fsdp", "tensor")

# (logical axis, mesh axis or axes or None). Parameters use the first block, activations the second.
DEFAULT_RULES: tuple[tuple[str, Any], ...] = (
    # parameters
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("qkv", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("layers", None),  # the stacked-layer axis of scanned models
    # activations and KV cache
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("cache_length", None),
)

Rules = Sequence[tuple[str, Any]]


def make_mesh(data: int = 1, fsdp: int = -1, tensor: int = 1, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A `("data", "fsdp", "tensor")` mesh; one size may be -1, meaning "all remaining devices".

    Axes are `AxisType.Auto` so XLA propagates shardings from parameters and the few activation
    constraints the model sets.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise UserError(f"mesh: at most one of data/fsdp/tensor may be -1, got {sizes}")
    known = int(np.prod([s for s in sizes if s != -1]))
    if any(s == 0 or s < -1 for s in sizes) or len(devices) % known:
        raise UserError(f"mesh: sizes data={data} fsdp={fsdp} tensor={tensor} do not divide {len(devices)} devices")
    sizes = [len(devices) // known if s == -1 else s for s in sizes]
    if int(np.prod(sizes)) != len(devices):
        raise UserError(f"mesh: sizes {sizes} use {int(np.prod(sizes))} devices but {len(devices)} are available")
    return jax.make_mesh(tuple(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)


def parse_mesh(text: str | None, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh from a `--mesh` value such as `fsdp=4,tensor=2` (axes not named are 1; one size may
    be -1, "all remaining devices"). Empty or None: every device on `fsdp`."""
    sizes = {"data": 1, "fsdp": 1, "tensor": 1} if text else {"data": 1, "fsdp": -1, "tensor": 1}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        if not sep or name.strip() not in sizes:
            raise UserError(f"--mesh {text}: {part!r} is not axis=size; use e.g. fsdp=4,tensor=2 with axes {', '.join(MESH_AXES)}")
        try:
            sizes[name.strip()] = int(value)
        except ValueError:
            raise UserError(f"--mesh {text}: size {value!r} of {name.strip()} is not an integer") from None
    return make_mesh(sizes["data"], sizes["fsdp"], sizes["tensor"], devices=devices)


def rules_from_config(value: Mapping[str, Any] | Iterable[Sequence[Any]] | None) -> tuple[tuple[str, Any], ...]:
    """Rules from a config: a mapping `{logical: mesh_axis}` or a list of pairs; lists become tuples.

    Logical names not given keep their `DEFAULT_RULES` entry.
    """
    if value is None:
        return DEFAULT_RULES
    pairs = list(value.items()) if isinstance(value, Mapping) else [tuple(p) for p in value]
    override = {}
    for pair in pairs:
        if len(pair) != 2:
            raise UserError(f"sharding rules: each rule is [logical_axis, mesh_axis], got {list(pair)}")
        name, axes = pair
        override[str(name)] = tuple(axes) if isinstance(axes, list) else axes
    merged = {name: override.pop(name, axes) for name, axes in DEFAULT_RULES}
    merged.update(override)
    return tuple(merged.items())


def logical_to_spec(
    names: Sequence[str | None] | None,
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
    rules: Rules = DEFAULT_RULES,
    *,
    strict: bool = False,
) -> PartitionSpec:
    """PartitionSpec for an array whose dimensions have logical `names`.

    With `shape` and `mesh`, a mesh axis that an earlier dimension already uses is skipped; one that
    does not divide its dimension is dropped (that dimension is replicated over it), or with
    `strict` raises a `UserError`.
    """
    if not names:
        return PartitionSpec()
    table = dict(rules)
    used: set[str] = set()
    spec = []
    for dim, name in enumerate(names):
        axes = table.get(name) if name is not None else None
        if axes is None:
            spec.append(None)
            continue
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        kept = []
        for axis in axes:
            if axis in used:
                continue
            if mesh is not None and shape is not None:
                size = mesh.shape[axis] * int(np.prod([mesh.shape[a] for a in kept]))
                if shape[dim] % size:
                    if strict:
                        raise UserError(
                            f"sharding: dimension {dim} ({name!r}, size {shape[dim]}) of shape {tuple(shape)} does not split "
                            f"over mesh axis {axis!r} ({mesh.shape[axis]} devices{', after ' + '+'.join(kept) if kept else ''}); "
                            f"change the mesh, or set the rule {name}: null to replicate it"
                        )
                    continue
            kept.append(axis)
        used.update(kept)
        spec.append(None if not kept else kept[0] if len(kept) == 1 else tuple(kept))
    return PartitionSpec(*spec)


def _logical_names(variable: Any) -> tuple[str | None, ...] | None:
    metadata = variable.get_metadata() if hasattr(variable, "get_metadata") else {}
    return metadata.get("out_sharding")


def param_shardings(state: Any, mesh: Mesh | None, rules: Rules = DEFAULT_RULES, *, allow_replication: bool = False) -> Any:
    """`NamedSharding` for every variable of an NNX state (or abstract state), from its logical names.

    Without a mesh, every variable gets the default device. A rule whose mesh axis does not divide
    a parameter's dimension raises a `UserError` naming the parameter, unless `allow_replication`
    (then that dimension is replicated over the axis).
    """
    from flax import nnx

    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def one(path, variable):
        if mesh is None:
            return variable.replace(device)
        try:
            spec = logical_to_spec(_logical_names(variable), variable.shape, mesh, rules, strict=not allow_replication)
        except UserError as err:
            where = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
            raise UserError(f"{where}: {err}") from None
        return variable.replace(NamedSharding(mesh, spec))

    return jax.tree_util.tree_map_with_path(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


_ACTIVE_RULES: contextvars.ContextVar[Rules] = contextvars.ContextVar("activation_rules", default=DEFAULT_RULES)


@contextlib.contextmanager
def use_rules(rules: Rules) -> Iterator[None]:
    """Rules for activation constraints (`constrain`) traced inside this block; default `DEFAULT_RULES`."""
    token = _ACTIVE_RULES.set(tuple(rules))
    try:
        yield
    finally:
        _ACTIVE_RULES.reset(token)


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Shard an activation by logical names under the mesh set with `jax.set_mesh`; no-op without one."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = logical_to_spec(names, x.shape, mesh, _ACTIVE_RULES.get())
    return jax.lax.with_sharding_constraint(x, spec)
