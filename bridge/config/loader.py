"""Load the config file: TOML → `${ENV}` expansion → strict validation, every problem at FILE:LINE.

Problems are collected, not raised one by one, so a user fixes the whole file in one go. Messages
never carry a value (an expanded secret must not leak into an error or a log).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bridge.channels.outbound import OutboundGuard
from bridge.config.models import Config, RulesConfig
from bridge.config.secret_files import resolve_secret_files
from bridge.config.tomlpos import TomlPositions, loc_to_key, read_toml, validation_problems
from bridge.errors import ConfigError, Problem

_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_CHANNEL_KINDS = ("webhook", "email", "mqtt", "apprise", "alertmanager")
_KINDS = {"providers": ("podero", "realto", "wattshift"), "channels": _CHANNEL_KINDS}
_TAGS = {"podero", "realto", "wattshift", *_CHANNEL_KINDS}


def _expand(
    value: Any, loc: tuple[str | int, ...], environ: Mapping[str, str], missing: list[tuple[Any, str]]
) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            if name in environ:
                return environ[name]
            if default is not None:
                return default
            missing.append((loc, name))
            return ""

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, (*loc, k), environ, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*loc, i), environ, missing) for i, v in enumerate(value)]
    return value


def _kind_problems(file: str, pos: TomlPositions, data: dict[str, Any]) -> list[Problem]:
    """A missing or unknown `kind` explained plainly (pydantic's union message is cryptic)."""
    problems = []
    for section, kinds in _KINDS.items():
        tables = data.get(section)
        if not isinstance(tables, dict):
            continue
        for name, table in tables.items():
            if not isinstance(table, dict):
                continue
            kind = table.get("kind")
            if kind not in kinds:
                what = "kind is required" if kind is None else f"unknown kind {kind!r}"
                line = pos.line_of((section, name, "kind")) or pos.line_of((section, name))
                problems.append(
                    Problem(file, line, f"{section}.{name}.kind", f"{what}: one of {', '.join(kinds)}")
                )
    return problems


def _credential_problems(file: str, pos: TomlPositions, config: Config) -> list[Problem]:
    problems = []
    for name, provider in config.providers.items():
        if provider.kind != "podero":
            continue
        has_client = provider.client_id is not None and provider.client_secret is not None
        has_password = provider.username is not None and provider.password is not None
        if not has_client and not has_password:
            problems.append(
                Problem(
                    file,
                    pos.line_of(("providers", name)),
                    f"providers.{name}",
                    "set client_id + client_secret (OAuth2 client credentials) or username + password",
                )
            )
    return problems


def _outbound_problems(file: str, pos: TomlPositions, config: Config) -> list[Problem]:
    """Webhook URLs whose literal address is refused (names are checked after DNS, at send time)."""
    guard = OutboundGuard(config.outbound.allow)
    problems = []
    for name, channel in config.channels.items():
        url = getattr(channel, "url", None)
        problem = guard.url_problem(url) if isinstance(url, str) else None
        if problem is not None:
            loc = ("channels", name, "url")
            problems.append(Problem(file, pos.line_of(loc) or pos.line_of(loc[:2]), loc_to_key(loc), problem))
    return problems


def _fallback_problems(file: str, pos: TomlPositions, config: Config) -> list[Problem]:
    """A channel's `fallback` names another configured channel."""
    problems: list[Problem] = []
    for name, channel in config.channels.items():
        to = channel.fallback
        if to is None:
            continue
        line, key = pos.line_of(("channels", name, "fallback")), f"channels.{name}.fallback"
        if to == name:
            problems.append(Problem(file, line, key, "a channel cannot be its own fallback"))
        elif to not in config.channels:
            known = ", ".join(sorted(c for c in config.channels if c != name)) or "none"
            close = difflib.get_close_matches(to, list(config.channels), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(Problem(file, line, key, f"unknown channel {to!r} (known: {known}){hint}"))
    return problems


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, expand and validate a config file; raise ConfigError listing every problem."""
    file_path = Path(path)
    file = str(path)
    data, text, problems = read_toml(file_path)
    if data is None:
        raise ConfigError(problems)
    pos = TomlPositions(text)
    missing: list[tuple[Any, str]] = []
    expanded = _expand(data, (), os.environ if environ is None else environ, missing)
    for loc, name in missing:
        problems.append(
            Problem(file, pos.line_of(loc), loc_to_key(loc), f"environment variable {name} is not set")
        )
    expanded, file_problems = resolve_secret_files(
        expanded, file=file, pos=pos, base_dir=file_path.resolve().parent
    )
    problems.extend(file_problems)
    kind_problems = _kind_problems(file, pos, expanded)
    problems.extend(kind_problems)
    config: Config | None = None
    try:
        config = Config.model_validate(expanded)
    except ValidationError as exc:
        found = validation_problems(file, pos, exc, tags=_TAGS)
        if kind_problems:  # the union errors of a table without a valid kind add only noise
            bad = {p.key.rsplit(".", 1)[0] for p in kind_problems}
            found = [p for p in found if not any(p.key.startswith(b) for b in bad)]
        problems.extend(found)
    if config is not None:
        problems.extend(_credential_problems(file, pos, config))
        problems.extend(_outbound_problems(file, pos, config))
        problems.extend(_fallback_problems(file, pos, config))
    if problems or config is None:
        raise ConfigError(problems)
    return config.model_copy(update={"base_dir": str(file_path.resolve().parent)})


def rule_settings(path: str | Path) -> tuple[list[str], Path, list[str]] | None:
    """The rule paths and channel names a config names, read without validating the rest of it:
    `check` still reports the rules' problems when the config has its own. None if unreadable."""
    file_path = Path(path)
    data, _, _ = read_toml(file_path)
    if data is None:
        return None
    rules = data.get("rules")
    paths = rules.get("paths") if isinstance(rules, dict) else None
    if not (isinstance(paths, list) and all(isinstance(p, str) for p in paths)):
        paths = list(RulesConfig().paths)
    channels = data.get("channels")
    names = [str(n) for n in channels] if isinstance(channels, dict) else []
    return paths, file_path.resolve().parent, names
