"""YAML configs read into frozen dataclasses, with `--set key=value` overrides.

A config schema is a (nested) frozen dataclass. `load_config(Schema, path, overrides)` reads the YAML
file, applies dotted overrides (`optim.learning_rate=3e-4`, values parsed as YAML), checks every key
against the schema and every value against its annotated type, and returns the dataclass. Any
mistake is a `UserError` naming the file and the dotted key, raised before any compute starts.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from emergence_jax.errors import UserError
from emergence_jax.io import atomic_write_text

T = TypeVar("T")


def load_config(schema: type[T], path: str | os.PathLike | None, overrides: Sequence[str] = ()) -> T:
    """Read `path` (YAML mapping; None = all defaults), apply `key=value` overrides, validate."""
    source = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as err:
            raise UserError(f"{source}: cannot read config ({err.strerror}); check the --config path") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as err:
            line = getattr(getattr(err, "problem_mark", None), "line", None)
            where = f" line {line + 1}" if line is not None else ""
            raise UserError(f"{source}{where}: not valid YAML; fix the syntax") from None
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
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise UserError(f"{source}: missing required key {key}")
    try:
        return schema(**values)
    except (ValueError, TypeError) as err:
        raise UserError(f"{source}: {err}") from None


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
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise UserError(f"{source}: {key} must be an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{source}: {key} must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise UserError(f"{source}: {key} must be a string, got {value!r}")
        return str(value)
    raise TypeError(f"config schema field {key} has an unsupported type {annotation!r}")
