"""Typed configs from YAML: an unknown or misspelt key is an error that names it.

A config is a tree of dataclasses with defaults for every field. :func:`load_config` reads a
YAML file (or a dict), checks every key against the dataclass fields (suggesting the closest name
for a typo), converts values to the annotated types, and returns the dataclass instance.
:func:`config_to_dict` gives back plain data for writing the *resolved* config into a run folder.
Configs are read in one place (the command line) and unpacked into explicit constructor
arguments; models never see them.

Examples
--------
>>> import dataclasses
>>> @dataclasses.dataclass
... class Optim:
...     lr: float = 1e-3
...     steps: int = 100
>>> load_config({"lr": 0.01}, Optim)
Optim(lr=0.01, steps=100)
>>> load_config({"lerning_rate": 0.01}, Optim)
Traceback (most recent call last):
...
echokdm.config.ConfigError: <dict>: unknown key 'lerning_rate' (expected one of: lr, steps)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from echokdm.errors import EchoKDMError

__all__ = ["ConfigError", "load_config", "config_to_dict", "save_config"]

T = TypeVar("T")


class ConfigError(EchoKDMError, ValueError):
    """A config file or dict that does not match its schema; the message names the key."""


def _convert(value: Any, annotation: Any, where: str, source: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, where, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}: {where}: value {value!r} not allowed")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{source}: {where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a mapping of keys, got {value!r}")
        return _build(value, annotation, where, source)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{source}: {where} must have {len(args)} items, got {len(value)}")
            items = [_convert(v, a, f"{where}[{i}]", source)
                     for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_type = args[0] if args else Any
            items = [_convert(v, item_type, f"{where}[{i}]", source) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where} must be true or false, got {value!r}")
        return value
    if annotation in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {where} must be a number, got {value!r}")
        if annotation is int and float(value) != int(value):
            raise ConfigError(f"{source}: {where} must be a whole number, got {value!r}")
        return annotation(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where} must be text, got {value!r}")
        return value
    return value


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return None


def _build(data: dict, cls: type[T], prefix: str, source: str, base: Any = None) -> T:
    """``cls`` from ``data``; keys absent from ``data`` keep ``base``'s values (the enclosing
    config's default for this section) when given, else the class defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {name: getattr(base, name) for name in fields} if base is not None else {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(fields)}"
            raise ConfigError(f"{source}: unknown key {where!r} ({hint})")
        default = getattr(base, key) if base is not None else _field_default(fields[key])
        if dataclasses.is_dataclass(hints[key]) and isinstance(value, dict) and dataclasses.is_dataclass(default):
            # a partial section overrides the enclosing default section, not the bare class defaults
            kwargs[key] = _build(value, hints[key], where, source, base=default)
        else:
            kwargs[key] = _convert(value, hints[key], where, source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {prefix or 'config'}: {exc}") from exc


def load_config(source: str | os.PathLike | dict | None, cls: type[T], overrides: dict | None = None) -> T:
    """Read a YAML file (or dict) into the dataclass ``cls``, validating every key.

    Parameters
    ----------
    source : path, dict or None
        The YAML file, a dict, or None for all defaults.
    cls : dataclass type
        The schema.
    overrides : dict, optional
        Nested values applied on top of the file (e.g. from command-line options).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ConfigError
        Unknown key (with the closest valid name), wrong type, or invalid value; the message
        names the file and the dotted key.
    """
    import yaml

    if source is None:
        data, name = {}, "<defaults>"
    elif isinstance(source, dict):
        data, name = dict(source), "<dict>"
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such config file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a config must be a mapping of keys, got {type(data).__name__}")
        name = str(path)
    if overrides:
        data = _merge(data, overrides)
    return _build(data, cls, "", name)


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_to_dict(config: Any) -> dict:
    """Plain nested dict (tuples as lists) of a config dataclass, for YAML output."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(config)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (the run folder's record of what ran)."""
    import yaml

    path = Path(path)
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return path
