"""`wattbridge rules test`: what the rules would notify for an old/new state or a recorded timeline.

Nothing is sent and nothing is stored: the real pipeline runs on a throwaway store
(rules/dryrun.py); input files are read by rules/timeline.py.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import textwrap
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bridge.errors import Problem, RuleError
from bridge.rehearse.dryrun import Notice
from bridge.rehearse.timeline import DryRunInputError, Step, guess_source, pair, read_state, read_timeline
from bridge.rules.engine import RuleSet
from bridge.rules.schema import SOURCES

EXIT_OK, EXIT_FAILED = 0, 1
# --old/--new: the old state is observed at this instant, the new one a minute later.
PAIR_START = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rules = sub.add_parser("rules", help="try rules offline: what would fire, rendered, nothing sent")
    verbs = rules.add_subparsers(dest="verb", required=True, metavar="VERB")
    test = verbs.add_parser(
        "test",
        help="replay an old/new state or a timeline through the rules (sends and stores nothing)",
        description="Replay states through diff, rules, timers and digests; print what would be sent.",
    )
    test.add_argument("-c", "--config", default="config.toml", help="config file (default: config.toml)")
    given = test.add_mutually_exclusive_group(required=True)
    given.add_argument("--old", type=Path, help="the resource's state before (JSON; null = absent)")
    given.add_argument("--timeline", type=Path, help="JSON lines of timestamped states and polls")
    test.add_argument("--new", type=Path, help="the resource's state after (JSON; null = gone)")
    test.add_argument("--source", choices=SOURCES, help="source of the states (default: guessed from them)")
    test.add_argument("--resource-id", help="resource id for --old/--new (default: the state's id)")
    test.add_argument("--rule", help="only this rule (by id)")
    test.add_argument("--rules", type=Path, help="only this rule file (default: the config's rule paths)")
    test.add_argument("--brief", action="store_true", help="one line per notification, without bodies")
    test.add_argument(
        "--expect",
        type=Path,
        help="TOML file of the notifications and digests the timeline must cause (exit 1 if not)",
    )


def run(args: argparse.Namespace) -> int:
    from bridge.config.loader import load_config
    from bridge.notify.rulebook import load_for
    from bridge.rehearse.dryrun import replay
    from bridge.rules.loader import load_rules

    if args.old is not None and args.new is None:
        raise DryRunInputError([Problem("--new", None, "", "--old needs --new (the state after)")])
    if args.new is not None and args.old is None:
        raise DryRunInputError([Problem("--old", None, "", "--new needs --old (the state before)")])
    config = load_config(args.config)
    if args.rules is not None:
        rules = load_rules(
            [str(args.rules.resolve())], base_dir=Path(config.base_dir), channels=config.channels
        )
    else:
        rules = load_for(config)
    if args.rule is not None:
        rules = _only(rules, args.rule)
    steps = _steps(args, rules)
    notices = asyncio.run(replay(config, rules, steps))
    what = f"rule {args.rule}" if args.rule else f"{len(rules.rules)} rules"
    if args.expect is not None:
        return _expect(args.expect, notices)
    print(f"Dry run of {what}: nothing is sent or stored.\n")
    print(render(notices, brief=args.brief))
    return EXIT_OK


def _expect(path: Path, notices: Sequence[Notice]) -> int:
    """promtool-style: OK, or every difference (FILE:LINE) and the dry run to compare with."""
    from bridge.explain.expect import check

    problems = check(path, notices)
    if not problems:
        n = sum(1 for x in notices if x.what == "event")
        d = sum(1 for x in notices if x.what == "digest")
        print(f"{path}: OK ({n} notification(s), {d} digest(s) as expected)")
        return EXIT_OK
    for problem in problems:
        print(f"FAILED {problem}")
    print("\nWhat the timeline caused:\n")
    print(render(notices, brief=True))
    return EXIT_FAILED


def _only(rules: RuleSet, rule_id: str) -> RuleSet:
    rule = rules.by_id.get(rule_id)
    if rule is None:
        close = difflib.get_close_matches(rule_id, list(rules.by_id), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RuleError([Problem("--rule", None, "", f"no rule has the id {rule_id!r}{hint}")])
    return RuleSet([rule])


def _steps(args: argparse.Namespace, rules: RuleSet) -> list[Step]:
    if args.timeline is not None:
        return read_timeline(args.timeline, default_source=args.source)
    old, new = read_state(args.old), read_state(args.new)
    source = args.source
    if source is None and len(rules.rules) == 1:
        source = rules.rules[0].source
    if source is None:
        source = guess_source([old, new], f"{args.old} / {args.new}")
    return pair(old, new, source=source, file=str(args.new), resource_id=args.resource_id, at=PAIR_START)


def _time(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def render(notices: Sequence[Notice], *, brief: bool = False) -> str:
    """The dry run as text: one line per happening, each notification with its rendered body."""
    lines: list[str] = []
    for n in notices:
        lines.append(f"{_time(n.at)}  {n.text}")
        for sent in n.deliveries:
            how = {"held": ", held for a digest", "suppressed": ", suppressed by a silence"}.get(
                sent.status, f", {sent.status}" if sent.status.startswith(("deferred", "suppressed:")) else ""
            )
            if sent.fallback is not None:
                how += f"; a dead letter goes on to {sent.fallback}"
            lines.append(f"    → {sent.channel} ({sent.kind}{how})")
            if not brief:
                lines.append(textwrap.indent(sent.text, "        "))
    counts = Counter(n.status for n in notices if n.what == "event")
    digests = sum(1 for n in notices if n.what == "digest")
    deliveries = sum(len(n.deliveries) for n in notices)
    flaps = f", {counts['flapping']} flapping, {counts['settled']} settled" if counts["flapping"] else ""
    summary = (
        f"\n{counts['firing']} firing, {counts['resolved']} resolved{flaps}, {digests} digest(s); "
        f"{deliveries} notification(s) rendered, none sent."
    )
    return "\n".join(lines) + "\n" + summary
