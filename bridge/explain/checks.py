"""Each condition of a rule, evaluated on one transition and written down: the `checks` of a trace.

Only run for rules that looked at a change (the candidates the engine indexed), after the engine
decided: the hot path stays as it is, and a trace says which condition failed, with its values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from bridge.model import Check
from bridge.poll.diff import get_path
from bridge.rules.engine import Rule, _any_equal, _number

MAX_VALUE_CHARS = 200  # a trace shows a value, not a whole nested state


def shown(value: Any) -> Any:
    """A value as a trace keeps it: scalars as they are, big structures cut to a short JSON text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value if len(value) <= MAX_VALUE_CHARS else value[: MAX_VALUE_CHARS - 1] + "…"
    text = orjson.dumps(value, default=str).decode()
    return value if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"


def _want(values: tuple[Any, ...]) -> Any:
    return values[0] if len(values) == 1 else list(values)


def transition_checks(
    rule: Rule, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, context: dict[str, Any]
) -> tuple[Check, ...]:
    """The rule's trigger conditions on old → new, in the order the rule file lists them."""
    checks: list[Check] = []
    if rule.field is not None:
        before, after = get_path(old, rule.field), get_path(new, rule.field)
        b, a = shown(before), shown(after)
        if rule.from_ is not None:
            checks.append(
                Check(name="from", want=_want(rule.from_), got=b, ok=_any_equal(before, rule.from_))
            )
        if rule.to is not None:
            checks.append(Check(name="to", want=_want(rule.to), got=a, ok=_any_equal(after, rule.to)))
        if rule.not_from is not None:
            ok = not _any_equal(before, rule.not_from)
            checks.append(Check(name="not_from", want=_want(rule.not_from), got=b, ok=ok))
        if rule.not_to is not None:
            ok = not _any_equal(after, rule.not_to)
            checks.append(Check(name="not_to", want=_want(rule.not_to), got=a, ok=ok))
        if rule.above is not None:
            nb, na = _number(before), _number(after)
            ok = nb is not None and na is not None and nb <= rule.above < na
            checks.append(Check(name="above", want=f"crosses above {rule.above:g}", got=[b, a], ok=ok))
        if rule.below is not None:
            nb, na = _number(before), _number(after)
            ok = nb is not None and na is not None and na < rule.below <= nb
            checks.append(Check(name="below", want=f"crosses below {rule.below:g}", got=[b, a], ok=ok))
        if not checks:  # `changed = true`, or only an `if`: the field moving is the condition
            checks.append(Check(name="changed", want="any change", got=[b, a], ok=True))
    if rule.condition is not None:
        got = rule.condition(context)  # an expression that fails counts as false (and is logged)
        checks.append(Check(name="if", want=rule.condition.source, got=got, ok=got))
    return tuple(checks)


def failed(checks: tuple[Check, ...]) -> tuple[str, ...]:
    """The failed checks, as a person reads them: `to: wanted true, got false`."""
    return tuple(
        f"{c.name}: wanted {orjson.dumps(c.want).decode()}, got {orjson.dumps(c.got).decode()}"
        for c in checks
        if not c.ok
    )
