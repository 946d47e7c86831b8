"""Read `rules/*.toml` into a RuleSet, reporting every problem of every file as FILE:LINE: key: message."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Collection, Sequence
from pathlib import Path

from pydantic import ValidationError

from bridge.config.models import DEFAULT_GROUP_INTERVAL, DEFAULT_GROUP_WAIT
from bridge.config.tomlpos import TomlPositions, read_toml, validation_problems
from bridge.config.windows import windows_of
from bridge.errors import Problem, RuleError
from bridge.rules.engine import Digest, Escalation, Rule, RuleSet
from bridge.rules.enums import value_problems
from bridge.rules.fields import field_problem, template_problems
from bridge.rules.flap import FlapSpec
from bridge.rules.schema import RuleFile, RuleModel, as_tuple
from bridge.rules.stale import looks_like_timestamp
from bridge.rules.templates import Expression, Template, compile_error


def _files(patterns: Sequence[str], base_dir: Path, problems: list[Problem]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if not p.is_absolute():
            p = base_dir / p
        matched = (
            sorted(Path(p.anchor).glob(str(p.relative_to(p.anchor))))
            if any(c in pattern for c in "*?[")
            else [p]
        )
        matched = [m for m in matched if m.is_file()]
        if not matched:
            problems.append(
                Problem(pattern, None, "rules.paths", f"no rule file matches {pattern!r} (from {base_dir})")
            )
        files.extend(m for m in matched if m not in files)
    return files


def _known(name: str, known: Collection[str]) -> str:
    names = ", ".join(sorted(known)) or "none configured"
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown channel {name!r} (known: {names}){hint}"


def _template_body(
    body: str, base_dir: Path, file: str, line: int | None, key: str, problems: list[Problem]
) -> str | None:
    """Inline text, or the content of a template file when `body` names one."""
    looks_like_path = (
        "\n" not in body and "{" not in body and body.strip().endswith((".txt", ".j2", ".jinja", ".md"))
    )
    if not looks_like_path:
        return body
    path = Path(body) if Path(body).is_absolute() else base_dir / body
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(
            Problem(file, line, key, f"cannot read template file {str(path)!r}: {exc.strerror or exc}")
        )
        return None


def _compile(
    model: RuleModel, index: int, file: str, pos: TomlPositions, base_dir: Path, channels: Collection[str]
) -> tuple[Rule | None, list[Problem]]:
    problems: list[Problem] = []
    key = f"rule[{index}]"

    def line(*loc: str | int) -> int | None:
        return pos.line_of(("rule", index, *loc))

    for i, name in enumerate(model.channels):
        if name not in channels:
            problems.append(Problem(file, line("channels", i), f"{key}.channels", _known(name, channels)))
    for i, step in enumerate(model.escalate):  # an escalation step's channels (#14)
        for j, name in enumerate(step.channels):
            if name not in channels:
                where = line("escalate", i, "channels", j) or line("escalate", i) or line("escalate")
                problems.append(Problem(file, where, f"{key}.escalate[{i}].channels", _known(name, channels)))
    if model.field is not None:
        unknown = field_problem(model.source, model.field)
        if unknown is not None:
            problems.append(Problem(file, line("field"), f"{key}.field", unknown))
        elif model.stale_after is not None and not looks_like_timestamp(model.field):
            problems.append(
                Problem(
                    file,
                    line("field"),
                    f"{key}.field",
                    f"`stale_after` needs a timestamp field (a name ending in _at, like "
                    f"current_state_last_updated_at), not {model.field!r}; or no field: the last read",
                )
            )
        else:
            matches = {
                "from": model.from_,
                "to": model.to,
                "not_from": model.not_from,
                "not_to": model.not_to,
            }
            for name, given in matches.items():
                if given is not None:
                    problems += [
                        Problem(file, line(name), f"{key}.{name}", p)
                        for p in value_problems(model.source, model.field, name, given)
                    ]
    condition = None
    if model.if_ is not None:
        err = compile_error(model.if_, expression=True)
        if err:
            problems.append(Problem(file, line("if"), f"{key}.if", err))
        else:
            problems += [
                Problem(file, line("if"), f"{key}.if", p)
                for p in template_problems(model.source, model.if_, expression=True)
            ]
            condition = Expression(model.if_, rule_id=model.id)
    subject = body = html = None
    if model.email is not None:
        if model.email.subject is not None:
            err = compile_error(model.email.subject, expression=False)
            if err:
                problems.append(Problem(file, line("email", "subject"), f"{key}.email.subject", err))
            else:
                problems += [
                    Problem(file, line("email", "subject"), f"{key}.email.subject", p)
                    for p in template_problems(model.source, model.email.subject, expression=False)
                ]
                subject = Template(model.email.subject, rule_id=model.id, name="email.subject")
        if model.email.body is not None:
            text = _template_body(
                model.email.body, base_dir, file, line("email", "body"), f"{key}.email.body", problems
            )
            if text is not None:
                err = compile_error(text, expression=False)
                if err:
                    problems.append(Problem(file, line("email", "body"), f"{key}.email.body", err))
                else:
                    problems += [
                        Problem(file, line("email", "body"), f"{key}.email.body", p)
                        for p in template_problems(model.source, text, expression=False)
                    ]
                    body = Template(text, rule_id=model.id, name="email.body")
        if model.email.html is not None:
            where = line("email", "html")
            markup = _template_body(model.email.html, base_dir, file, where, f"{key}.email.html", problems)
            if markup is not None:
                err = compile_error(markup, expression=False)
                if err:
                    problems.append(Problem(file, where, f"{key}.email.html", err))
                else:
                    problems += [
                        Problem(file, where, f"{key}.email.html", p)
                        for p in template_problems(model.source, markup, expression=False)
                    ]
                    html = Template(markup, rule_id=model.id, name="email.html", autoescape=True)
    mqtt_topic = None
    if model.mqtt is not None and model.mqtt.topic is not None:
        where, name = line("mqtt", "topic"), f"{key}.mqtt.topic"
        err = compile_error(model.mqtt.topic, expression=False)
        if err:
            problems.append(Problem(file, where, name, err))
        else:
            problems += [
                Problem(file, where, name, p)
                for p in template_problems(model.source, model.mqtt.topic, expression=False)
            ]
            mqtt_topic = Template(model.mqtt.topic, rule_id=model.id, name="mqtt.topic")
    if problems:
        return None, problems
    steps = model.repeat if isinstance(model.repeat, tuple) else ()
    rule = Rule(
        id=model.id,
        description=model.description,
        source=model.source,
        field=model.field,
        event=model.event,
        severity=model.severity,
        type=model.type or model.id,
        channels=tuple(model.channels),
        file=file,
        line=pos.line_of(("rule", index)),
        from_=as_tuple(model.from_),
        to=as_tuple(model.to),
        not_from=as_tuple(model.not_from),
        not_to=as_tuple(model.not_to),
        changed=model.changed,
        above=model.above,
        below=model.below,
        hysteresis=model.hysteresis or 0.0,
        condition=condition,
        for_=model.for_,
        repeat=steps[0] if steps else None,
        repeat_max=model.repeat_max,
        repeat_steps=steps,
        repeat_never=model.repeat == "never",
        cooldown=model.cooldown,
        stale_after=model.stale_after,
        resolve=model.resolve,
        email_subject=subject,
        email_body=body,
        email_html=html,
        mqtt_topic=mqtt_topic,
        digest=_digest(model),
        schedule=windows_of(model),
        inhibits=tuple(model.inhibits),
        inhibit_scope=model.inhibit_scope or "resource",
        inhibits_line=line("inhibits"),
        escalate=tuple(Escalation(after=e.after, channels=tuple(e.channels)) for e in model.escalate),
        flap=None
        if model.flap is None
        else FlapSpec(changes=model.flap.changes, within=model.flap.within, settle=model.flap.settle),
    )
    return rule, []


def _digest(model: RuleModel) -> Digest | None:
    if model.group_by is None:
        return None
    # The rule always leads the key: a rule's digest never mixes with another rule's.
    by = ("rule", *(f for f in dict.fromkeys(model.group_by) if f != "rule"))
    return Digest(
        group_by=by,
        wait=model.group_wait if model.group_wait is not None else DEFAULT_GROUP_WAIT,
        interval=model.group_interval if model.group_interval is not None else DEFAULT_GROUP_INTERVAL,
    )


def load_file(path: Path, *, base_dir: Path, channels: Collection[str]) -> tuple[list[Rule], list[Problem]]:
    """Every rule of one file, or the problems that keep them from loading."""
    file = str(path)
    data, text, problems = read_toml(path)
    if data is None:
        return [], problems
    pos = TomlPositions(text)
    try:
        parsed = RuleFile.model_validate(data)
    except ValidationError as exc:
        found = _aliased(validation_problems(file, pos, exc))
        # Every problem at once: the rules (and keys) that did validate are still compiled, so an
        # invalid `for` does not hide an unknown channel of the same rule or a problem of the next.
        return [], problems + found + _checked_around(data, exc, file, pos, base_dir, channels)
    rules: list[Rule] = []
    for index, model in enumerate(parsed.rule):
        rule, found = _compile(model, index, file, pos, base_dir, channels)
        problems.extend(found)
        if rule is not None:
            rules.append(rule)
    return rules, problems


def _aliased(problems: list[Problem]) -> list[Problem]:
    for p in problems:
        # `rule.0.from` reads better as the user wrote it: aliases, not Python names.
        object.__setattr__(
            p, "key", p.key.replace("from_", "from").replace("if_", "if").replace("for_", "for")
        )
    return problems


def _checked_around(
    data: dict[str, object],
    exc: ValidationError,
    file: str,
    pos: TomlPositions,
    base_dir: Path,
    channels: Collection[str],
) -> list[Problem]:
    """The compile-time problems of each rule, its invalid keys left out (they are reported already).
    A rule that is invalid as a whole (a missing key, a contradiction between keys) is not compiled."""
    raw = data.get("rule")
    if not isinstance(raw, list):
        return []
    bad_keys: dict[int, set[str]] = {}
    whole: set[int] = set()
    for error in exc.errors():
        loc = error["loc"]
        if len(loc) >= 2 and loc[0] == "rule" and isinstance(loc[1], int):
            if len(loc) >= 3 and isinstance(loc[2], str):
                bad_keys.setdefault(loc[1], set()).add(loc[2])
            else:
                whole.add(loc[1])
    problems: list[Problem] = []
    for index, entry in enumerate(raw):
        if index in whole or not isinstance(entry, dict):
            continue
        rest = {k: v for k, v in entry.items() if k not in bad_keys.get(index, set())}
        try:
            model = RuleModel.model_validate(rest)
        except ValidationError:
            continue  # without its invalid keys the rule is incomplete: its own errors say why
        problems += _compile(model, index, file, pos, base_dir, channels)[1]
    return problems


def _inhibition_problems(rules: Sequence[Rule]) -> list[Problem]:
    """Each `inhibits` entry must name (or match) another rule of the set."""
    ids = [r.id for r in rules]
    problems = []
    for rule in rules:
        for pattern in rule.inhibits:
            if not any(fnmatch.fnmatchcase(i, pattern) for i in ids if i != rule.id):
                close = difflib.get_close_matches(pattern, [i for i in ids if i != rule.id], n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                message = f"{pattern!r} matches no other rule{hint}"
                problems.append(Problem(rule.file, rule.inhibits_line, f"rule {rule.id}: inhibits", message))
    return problems


def load_rules(patterns: Sequence[str], *, base_dir: Path, channels: Collection[str]) -> RuleSet:
    """Load every rule file; raise one RuleError listing every problem found in all of them."""
    problems: list[Problem] = []
    rules: list[Rule] = []
    seen: dict[str, Rule] = {}
    for path in _files(patterns, base_dir, problems):
        found_rules, found = load_file(path, base_dir=base_dir, channels=channels)
        problems.extend(found)
        for rule in found_rules:
            first = seen.get(rule.id)
            if first is not None:
                problems.append(
                    Problem(
                        rule.file,
                        rule.line,
                        "id",
                        f"duplicate rule id {rule.id!r} (first at {first.file}:{first.line})",
                    )
                )
                continue
            seen[rule.id] = rule
            rules.append(rule)
    problems += _inhibition_problems(rules)
    if problems:
        # In file order, so a reader fixes them top to bottom (a rule's keys are checked in no
        # particular order).
        raise RuleError(sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return RuleSet(rules)
