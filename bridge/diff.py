"""Diff stage: field-level changes between two JSON states, ignoring fields that move on every read.

Paths are dotted (`device_model.model`). Lists of action-like items (dicts with a `code`, Podero's
`actions[]`) are compared item by item, keyed by code, as `actions[reauthenticate]`; their re-signed
`resolution_link.url` secret never counts. Other lists compare as one value.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from bridge.model import Change

# Fields that change on every read without meaning (SPEC §4, providers.md §1.6), per source.
_COMMON_VOLATILE = frozenset({"updated_at", "updatedAt"})
VOLATILE: Mapping[str, frozenset[str]] = {
    "podero.wallbox": _COMMON_VOLATILE
    | {
        "last_monitoring_executed_at",
        "optimization_score",
        "charge_state_last_updated_at",
        "consumption_last_day_kwh",
        "consumption_last_week_kwh",
        "consumption_last_month_kwh",
        "consumption_last_updated_at",
    },
    # Health moves its timestamps on every poll; status and failure counts are what rules watch.
    "bridge.provider": _COMMON_VOLATILE | {"last_success_at", "last_poll_at"},
}
_VOLATILE_SUFFIXES = ("_last_updated_at",)
_CUE = re.compile(r"/cues/([^/?#]+)")
_MISSING = object()


def is_volatile(name: str, source: str, keep: frozenset[str] = frozenset()) -> bool:
    """True when `name` moves on every read of `source` (and no rule asked to keep it)."""
    if name in keep:
        return False
    return name in VOLATILE.get(source, _COMMON_VOLATILE) or name.endswith(_VOLATILE_SUFFIXES)


def _is_action_list(value: list[Any]) -> bool:
    return bool(value) and all(isinstance(item, dict) and "code" in item for item in value)


def _action_key(item: Mapping[str, Any]) -> str:
    return str(item.get("code"))


def _normal_action(item: Mapping[str, Any]) -> dict[str, Any]:
    """The action without its per-read secret: the URL keeps its path (and so the cue id) only."""
    out = dict(item)
    link = out.get("resolution_link")
    if isinstance(link, dict) and isinstance(link.get("url"), str):
        out["resolution_link"] = {**link, "url": link["url"].split("?", 1)[0]}
    return out


def _action_items(value: list[Any]) -> dict[str, dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    for item in value:
        key = _action_key(item)
        if key in items:  # the same code twice: tell them apart by cue id
            link = item.get("resolution_link") or {}
            cue = _CUE.search(str(link.get("url", "")))
            key = f"{key}:{cue.group(1) if cue else len(items)}"
        items[key] = _normal_action(item)
    return items


def _flatten(value: Any, path: str, out: dict[str, Any], source: str, keep: frozenset[str]) -> None:
    if isinstance(value, dict):
        for name, child in value.items():
            if is_volatile(name, source, keep):
                continue
            _flatten(child, f"{path}.{name}" if path else name, out, source, keep)
    elif isinstance(value, list) and _is_action_list(value):
        for key, item in _action_items(value).items():
            out[f"{path}[{key}]"] = item
    else:
        out[path] = value


def flatten(
    state: Mapping[str, Any] | None, *, source: str, keep: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """`{dotted.path: leaf value}` of the meaningful fields of a state."""
    out: dict[str, Any] = {}
    if state is not None:
        _flatten(dict(state), "", out, source, keep)
    return out


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a flip from 1 to true is still a change of the JSON value.
    return a == b and type(a) is type(b) if isinstance(a, bool) or isinstance(b, bool) else a == b


def diff(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    *,
    source: str,
    keep: frozenset[str] = frozenset(),
) -> list[Change]:
    """Field-level changes from `old` to `new` (either may be None: appeared / disappeared)."""
    before = flatten(old, source=source, keep=keep)
    after = flatten(new, source=source, keep=keep)
    changes: list[Change] = []
    for path in before.keys() | after.keys():
        a = before.get(path, _MISSING)
        b = after.get(path, _MISSING)
        if a is _MISSING or b is _MISSING or not _same(a, b):
            changes.append(
                Change(field=path, old=None if a is _MISSING else a, new=None if b is _MISSING else b)
            )
    changes.sort(key=lambda c: c.field)
    return changes


class _VolatileNames(dict[str, bool]):
    """`is_volatile` memoised per field name for one (source, keep): the digest asks it for every key
    of every poll. Bounded, so a provider sending ever-new keys (ids as keys) cannot grow it forever."""

    __slots__ = ("keep", "source")

    def __init__(self, source: str, keep: frozenset[str]) -> None:
        super().__init__()
        self.source, self.keep = source, keep

    def __missing__(self, name: str) -> bool:
        volatile = is_volatile(name, self.source, self.keep)
        if len(self) < _MEMO_MAX:
            self[name] = volatile
        return volatile


_MEMO_MAX = 4096


@functools.lru_cache(maxsize=256)
def _volatile_names(source: str, keep: frozenset[str]) -> _VolatileNames:
    return _VolatileNames(source, keep)


def _strip(value: Mapping[str, Any], volatile: _VolatileNames) -> dict[str, Any]:
    out = {}
    for name, child in value.items():
        if volatile[name]:
            continue
        if isinstance(child, dict):
            child = _strip(child, volatile)
        elif isinstance(child, list):
            child = _strip_list(child, volatile)
        out[name] = child
    return out


def _strip_list(value: list[Any], volatile: _VolatileNames) -> list[Any]:
    if _is_action_list(value):
        return sorted(
            (_normal_action(i) for i in value), key=lambda i: orjson.dumps(i, option=orjson.OPT_SORT_KEYS)
        )
    return [
        _strip(v, volatile) if isinstance(v, dict) else _strip_list(v, volatile) if isinstance(v, list) else v
        for v in value
    ]


def meaningful_digest(
    state: Mapping[str, Any] | None, *, source: str, keep: frozenset[str] = frozenset()
) -> str:
    """A digest of the meaningful fields: equal for two reads that differ only in volatile fields."""
    if state is None:
        return "gone"
    body = orjson.dumps(_strip(state, _volatile_names(source, keep)), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(body, digest_size=16).hexdigest()


def digest64(digest: str) -> int:
    """A stored digest in 8 bytes' worth of int, for the poller's in-memory "unchanged?" check.

    The store keeps the full 128-bit digest; 64 bits decide only whether to look at the store at all.
    Non-hex markers ("gone", "listing") map to small negative numbers no hex digest can take.
    """
    try:
        return int(digest[:16], 16)
    except ValueError:
        return -1 - sum(digest.encode()) % 1_000_003


_STEP = re.compile(r"([^.\[\]]+)(?:\[([^\]]+)\])?")


@functools.lru_cache(maxsize=4096)
def parse_path(path: str) -> tuple[tuple[str, str | None], ...] | None:
    """`a.b[code]` → (("a", None), ("b", "code")); None when malformed. Cached: rules reuse paths."""
    steps = []
    for part in path.split("."):
        m = _STEP.fullmatch(part)
        if m is None:
            return None
        steps.append((m.group(1), m.group(2)))
    return tuple(steps)


def get_path(state: Mapping[str, Any] | None, path: str) -> Any:
    """The value at a dotted path (`device_model.model`, `actions[reauthenticate]`); None when absent."""
    steps = parse_path(path)
    if steps is None:
        return None
    value: Any = state
    for name, code in steps:
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
        if code is not None:
            if not isinstance(value, list):
                return None
            value = next((i for i in value if isinstance(i, Mapping) and str(i.get("code")) == code), None)
    return value
