"""YAML configs read into frozen dataclasses, with `--set key=value` overrides.

A config schema is a (nested) frozen dataclass. `load_config(Schema, path, overrides)` reads the YAML
file, applies dotted overrides (`optim.learning_rate=3e-4`, values parsed as YAML), checks every key
against the schema and every value against its annotated type, and returns the dataclass. Any
mistake is a `UserError` naming the file and the dotted key, raised before any compute starts.

Numbers: every float must be finite (``.nan``, ``.inf``, ``1e400`` are refused) and every integer at
most 2^53 in magnitude; a field declared with `bounded` must also lie in its range. The file is a
UTF-8 regular file of at most 1 MiB whose YAML nests at most `MAX_DEPTH` levels.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

import yaml

from emergence_jax.errors import UserError
from emergence_jax.io import atomic_write_text, read_text

T = TypeVar("T")

MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read: 1 MiB."""
MAX_DEPTH = 32
"""Deepest nesting of mappings/lists in a config."""
MAX_NODES = 100_000
"""Most values in one config (YAML aliases could otherwise make a small file expand enormously)."""
EXACT_INT = 2**53


def bounded(default: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False, high_open: bool = False, also: tuple = ()) -> Any:
    """A dataclass field that `load_config` checks to lie in [low, high] (an end excluded with
    `low_open`/`high_open`; a missing end unbounded); values in `also` pass regardless (e.g. -1 =
    "all the remaining devices"). For a tuple field every item is checked."""
    return dataclasses.field(default=default, metadata={"bounds": (low, high, low_open, high_open, tuple(also))})


def load_config(schema: type[T], path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> T:
    """Read `path` (YAML mapping; None = all defaults), apply `key=value` overrides, validate."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        text = read_text(path, max_bytes=MAX_CONFIG_BYTES, what="config file")
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            line = getattr(getattr(err, "problem_mark", None), "line", None)
            where = f" line {line + 1}" if line is not None else ""
            raise UserError(f"{source}{where}: not valid YAML; fix the syntax") from None
        except RecursionError:
            raise UserError(f"{source}: YAML nested too deeply; a config nests at most {MAX_DEPTH} levels") from None
        _check_shape(loaded, source)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{source}: the top level must be a mapping of keys to values")
        data = loaded
    for override in overrides:
        apply_override(data, override)
    return config_from_dict(schema, data, source=source)


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set `a.b.c=value` in the nested dict `data` in place; the value is parsed as YAML."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--set {override!r}: expected key=value, e.g. --set optim.learning_rate=3e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except RecursionError:
        raise UserError(f"--set {key}: value nested too deeply") from None
    _check_shape(value, f"--set {key}")
    parts = key.strip().split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise UserError(f"--set {override!r}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = value


def config_from_dict(schema: type[T], data: Mapping[str, Any], *, source: str = "<config>", prefix: str = "") -> T:
    """Build `schema` from a nested mapping; unknown keys and wrong types are `UserError`s."""
    if not isinstance(data, Mapping):
        raise UserError(f"{source}: {prefix or 'config'} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    hints = typing.get_type_hints(schema)
    unknown = [key for key in data if key not in fields]
    if unknown:
        known = ", ".join(sorted(fields))
        raise UserError(f"{source}: unknown key {prefix}{unknown[0]!s}; known keys here: {known}")
    values = {}
    for name, field in fields.items():
        key = f"{prefix}{name}"
        if name in data:
            values[name] = _coerce(hints[name], data[name], source=source, key=key)
            if "bounds" in field.metadata:
                _check_bounds(values[name], field.metadata["bounds"], source=source, key=key)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: missing required key {key}")
    try:
        return schema(**values)
    except (ValueError, TypeError) as err:
        raise UserError(f"{source}: {err}") from None


def _check_shape(data: Any, source: str) -> None:
    """Refuse configs nested deeper than `MAX_DEPTH` or holding more than `MAX_NODES` values."""
    stack = [(data, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise UserError(f"{source}: more than {MAX_NODES} values (YAML aliases expanding?); simplify the config")
        if depth > MAX_DEPTH:
            raise UserError(f"{source}: nested deeper than {MAX_DEPTH} levels; a config is a few levels of mappings")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


def _check_bounds(value: Any, bounds: tuple, *, source: str, key: str) -> None:
    low, high, low_open, high_open, also = bounds
    for item in value if isinstance(value, tuple) else (value,):
        if item is None or item in also:
            continue
        below = low is not None and (item <= low if low_open else item < low)
        above = high is not None and (item >= high if high_open else item > high)
        if below or above:
            left = "(" if low_open else "["
            right = ")" if high_open else "]"
            span = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
            extra = f" (or {', '.join(map(str, also))})" if also else ""
            raise UserError(f"{source}: {key} = {item} is outside {span}{extra}")


def config_to_dict(config: Any) -> Any:
    """The plain-data (YAML-safe) form of a config dataclass, tuples as lists."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, (list, tuple)):
        return [config_to_dict(v) for v in config]
    return config


def save_config(config: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML atomically (temp file, then rename)."""
    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))


def _coerce(annotation: Any, value: Any, *, source: str, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source=source, key=key)
            except UserError as err:
                errors.append(err)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise UserError(f"{source}: {key} must be one of {choices}, got {value!r}")
        return value
    if origin in (tuple, list, Sequence):
        if isinstance(value, (str, int, float)):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{source}: {key} must be a list, got {value!r}")
        item_type = args[0] if args else Any
        return tuple(_coerce(item_type, v, source=source, key=f"{key}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(annotation):
        return config_from_dict(annotation, value if value is not None else {}, source=source, prefix=f"{key}.")
    if annotation is Any:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise UserError(f"{source}: {key} must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: {key} must be an integer, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{source}: {key} must be a finite integer, got {value!r}")
        if int(value) != value:
            raise UserError(f"{source}: {key} must be an integer, got {value!r}")
        if abs(value) > EXACT_INT:
            raise UserError(f"{source}: {key} = {value!r} is beyond 2^53; use a sensible size")
        return int(value)
    if annotation is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: {key} must be a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise UserError(f"{source}: {key} must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{source}: {key} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"config schema field {key} has an unsupported type {annotation!r}")
