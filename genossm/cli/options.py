"""Typed options for every command: one dataclass per command, filled from YAML and then from flags.

A field's ``help`` metadata is its documentation in ``--help``. YAML files only hold values; an unknown key in
a file is an error that names the file and the key. The resolved options are saved with every run.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with ``--help`` text."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def _scalar_type(annotation: Any) -> Any:
    """int | None -> int; Path, str, float, bool, Literal stay; anything else is read as a string."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar_type(args[0]) if len(args) == 1 else str
    return annotation


def add_options(parser: argparse.ArgumentParser, cls: type, positional: tuple[str, ...] = ()) -> None:
    """One ``--flag-name`` per field of ``cls`` (``positional`` fields become positional arguments)."""
    hints = typing.get_type_hints(cls)
    for field in sorted(dataclasses.fields(cls), key=lambda f: f.kw_only):  # keyword-only (shared) options last
        kind = _scalar_type(hints[field.name])
        text = field.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        default = field.default if field.default is not dataclasses.MISSING else None
        if field.name in positional:
            parser.add_argument(field.name, type=kind, help=text)
            continue
        flag = "--" + field.name.replace("_", "-")
        shown = str(default).replace("%", "%%")
        help_text = f"{text} (default: {shown})" if default is not None else text
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=help_text)
        elif typing.get_origin(kind) is typing.Literal:
            choices = typing.get_args(kind)
            parser.add_argument(flag, choices=choices, type=type(choices[0]), default=argparse.SUPPRESS, help=help_text)
        else:
            kind = kind if kind in (int, float, str, Path) else str
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_text)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``, with errors that name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise FileNotFoundError(f"cannot read config {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config must be a mapping of keys to values")
    return data


def check_keys(cls: type, values: dict[str, Any], source: str) -> None:
    """Reject keys ``cls`` does not have (naming ``source``)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown option(s) {unknown}; known: {sorted(known)}")


def build_options(cls: type[T], values: dict[str, Any], source: str) -> T:
    """``cls(**values)``, rejecting keys ``cls`` does not have (naming ``source``).

    Values from YAML arrive as plain strings and numbers; paths are turned into ``Path`` here, as argparse does for
    flags, so an option has one type whichever way it was given.
    """
    check_keys(cls, values, source)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f)]
    if missing:
        raise ValueError(f"{source}: missing required option(s) {missing}")
    hints = typing.get_type_hints(cls)
    typed = {k: Path(v) if isinstance(v, str) and _scalar_type(hints[k]) is Path else v for k, v in values.items()}
    return cls(**typed)


def _required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def resolve_options(
    cls: type[T], args: argparse.Namespace, config: str | Path | None = None, base: dict[str, Any] | None = None
) -> T:
    """Options from ``base`` (a resumed run's saved options), then the YAML ``config``, then the flags given.

    Flags not given on the command line are absent from ``args`` (their argparse default is SUPPRESS), so a value
    from the file is only replaced by a flag the user typed.
    """
    values = read_yaml(config) if config else {}
    check_keys(cls, values, str(config))  # check the file alone first, so errors name it
    values = {**(base or {}), **values}
    names = {f.name for f in dataclasses.fields(cls)}
    values.update({k: v for k, v in vars(args).items() if k in names and v is not None})
    return build_options(cls, values, "command line")


def plain_options(options: Any) -> dict[str, Any]:
    """The resolved options as plain values (paths as strings): what config.yaml and summary.json record."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(options).items()}


def dump_options(options: Any) -> str:
    """The resolved options as YAML (saved beside every run)."""
    return yaml.safe_dump(plain_options(options), sort_keys=False)
