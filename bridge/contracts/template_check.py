"""`wattbridge check` for webhook `body_template`s: each renders to JSON naming only known fields.

For every webhook channel with a body template, and every source of the rules that send to it (or,
with no rule, the `wattbridge channels test` event), the template is (1) read for the names it uses:
top-level names other than `type`, `timestamp`, `data`, `old`, `new`, keys of `data` the envelope
does not have, and state fields (`new.X`, `old.X`, `data.state.X`) the source does not have; and
(2) rendered against a realistic sample event of that source (`samples.py`), whose result must parse
as JSON when the channel's content type is JSON. Nothing touches the network.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from jinja2 import meta, nodes

from bridge.channels.webhook import envelope
from bridge.config.models import Config, WebhookChannelConfig
from bridge.contracts.envelope import EventData
from bridge.contracts.samples import channel_test_event, sample_event, sample_old
from bridge.errors import Problem
from bridge.model import Event
from bridge.rules.engine import Rule
from bridge.rules.fields import field_problem
from bridge.rules.templates import ENV

TOP_LEVEL = ("type", "timestamp", "data", "old", "new")
_DATA_KEYS = frozenset(EventData.model_fields)
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})


def body_template_problems(
    config: Config, rules: Iterable[Rule], *, file: str, line_of: Any
) -> list[Problem]:
    """Every problem of every webhook body template; `line_of(loc)` places a config key."""
    rules = list(rules)
    problems: list[Problem] = []
    for name, cfg in config.channels.items():
        if not isinstance(cfg, WebhookChannelConfig) or cfg.body_template is None:
            continue
        key = f"channels.{name}.body_template"
        line = line_of(("channels", name, "body_template")) or line_of(("channels", name))
        sources = sorted({r.source for r in rules if name in r.channels})
        seen: set[str] = set()
        for message in _check_one(cfg, sources, name):
            if message not in seen:  # one template problem, reported once for all sources
                seen.add(message)
                problems.append(Problem(file, line, key, message))
    return problems


def _check_one(cfg: WebhookChannelConfig, sources: list[str], channel: str) -> list[str]:
    assert cfg.body_template is not None  # noqa: S101 -- the caller filtered
    tree = ENV.parse(cfg.body_template)
    out = [
        f"unknown name {n!r}: a body template sees {', '.join(TOP_LEVEL)}"
        for n in sorted(meta.find_undeclared_variables(tree) - set(TOP_LEVEL))
    ]
    for path in sorted(_paths(tree, "data")):
        first = path.split(".", 1)[0]
        if first not in _DATA_KEYS:
            out.append(
                f"'data.{path}': unknown field of the envelope's data ({', '.join(sorted(_DATA_KEYS))})"
            )
    events: list[tuple[Event, dict[str, Any] | None]] = [
        (sample_event(s, event_type=f"{s}.sample"), sample_old(s)) for s in sources
    ] or [(channel_test_event(channel), None)]
    state_paths = _paths(tree, "old") | _paths(tree, "new")
    state_paths |= {p.split(".", 1)[1] for p in _paths(tree, "data") if p.startswith("state.")}
    for event, old in events:
        source = event.key.source
        for path in sorted(state_paths):
            problem = None if not sources else field_problem(source, path)
            if problem is not None:
                out.append(f"{problem} (read by the template)")
        try:
            text = ENV.from_string(cfg.body_template).render(**envelope(event), old=old, new=event.state)
        except Exception as exc:  # what `render` would note in the body at run time
            out.append(f"fails to render for a {source} event: {type(exc).__name__}: {exc}")
            continue
        if _is_json(cfg.content_type):
            try:
                orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                out.append(f"renders invalid JSON for a {source} event ({exc}); quote values with `| tojson`")
    return out


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _paths(tree: nodes.Node, root: str) -> set[str]:
    """Dotted attribute paths read from the name `root` (`data.state.owner.email` → `state.owner.email`),
    longest only; `x.get(...)` and other dict methods end a path."""
    found: set[str] = set()
    for attr in tree.find_all(nodes.Getattr):
        parts: list[str] = []
        cur: nodes.Node = attr
        while isinstance(cur, nodes.Getattr):
            parts.append(cur.attr)
            cur = cur.node
        if isinstance(cur, nodes.Name) and cur.name == root:
            parts.reverse()
            cut = next((i for i, p in enumerate(parts) if p in _DICT_METHODS), len(parts))
            if parts[:cut]:
                found.add(".".join(parts[:cut]))
    return {p for p in found if not any(q.startswith(p + ".") for q in found)}
