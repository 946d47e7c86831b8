"""`*_file` forms of secrets (issue #15): `password_file = "/run/secrets/smtp"` reads the secret from a
file, as Docker and Kubernetes mount them.

Every secret key of the config (each `SecretStr` field of the models, found by walking them, so a new
secret gets its `_file` form for free) may be given as `KEY_FILE` instead: the file's text, without
its trailing newline, becomes the value. A relative path is relative to the config file. Problems
name the file and line of the `_file` key, and the path; never what the file holds.
"""

from __future__ import annotations

import functools
import types
import typing
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, SecretStr

from bridge.config.tomlpos import TomlPositions, loc_to_key
from bridge.errors import Problem

SUFFIX = "_file"
MAX_BYTES = 64 * 1024  # a secret, not a document: a bigger file is the wrong file


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list, dict, typing.Annotated):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return typing.get_origin(annotation) in (Union, types.UnionType) and SecretStr in typing.get_args(
        annotation
    )


@functools.cache
def secret_keys() -> frozenset[str]:
    """The names of every secret field anywhere in the config's models."""
    from bridge.config.models import Config

    found: set[str] = set()
    seen: set[type[BaseModel]] = set()
    todo: list[type[BaseModel]] = [Config]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        for name, field in model.model_fields.items():
            if _is_secret(field.annotation):
                found.add(field.alias or name)
            todo.extend(_models_in(field.annotation))
    return frozenset(found)


def resolve_secret_files(
    data: Any, *, file: str, pos: TomlPositions, base_dir: Path, loc: tuple[str | int, ...] = ()
) -> tuple[Any, list[Problem]]:
    """`data` with every `SECRET_file` key replaced by `SECRET` = the file's text."""
    problems: list[Problem] = []
    if isinstance(data, list):
        out_list = []
        for i, item in enumerate(data):
            value, found = resolve_secret_files(item, file=file, pos=pos, base_dir=base_dir, loc=(*loc, i))
            out_list.append(value)
            problems += found
        return out_list, problems
    if not isinstance(data, dict):
        return data, problems
    out: dict[str, Any] = {}
    for key, value in data.items():
        base = key.removesuffix(SUFFIX)
        if key.endswith(SUFFIX) and base in secret_keys():
            where = (*loc, key)
            line = pos.line_of(where)
            if base in data:
                problems.append(
                    Problem(file, line, loc_to_key(where), f"set either {base} or {key}, not both")
                )
                continue
            if not isinstance(value, str) or not value:
                problems.append(Problem(file, line, loc_to_key(where), "expected the path of a file"))
                continue
            secret, problem = _read(base_dir / value, value)
            if problem is not None:
                problems.append(Problem(file, line, loc_to_key(where), problem))
                continue
            out[base] = secret
        else:
            out[key], found = resolve_secret_files(
                value, file=file, pos=pos, base_dir=base_dir, loc=(*loc, key)
            )
            problems += found
    return out, problems


def _read(path: Path, given: str) -> tuple[str, str | None]:
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        return "", f"cannot read {given!r}: {exc.strerror or type(exc).__name__}"
    if len(raw) > MAX_BYTES:
        return "", f"{given!r} is larger than {MAX_BYTES // 1024} KiB: not a secret file"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "", f"{given!r} is not UTF-8 text"
    text = text.removesuffix("\n").removesuffix("\r")  # `echo secret > file` adds a newline
    if not text.strip():
        return "", f"{given!r} is empty"
    return text, None
