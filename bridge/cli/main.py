"""The `wattbridge` command line. Exit codes: 0 ok, 1 invalid input, 2 runtime failure."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge import __version__, logs
from bridge.cli import acks as cli_acks
from bridge.cli import deliveries as cli_deliveries
from bridge.cli import explain as cli_explain
from bridge.cli import rules as cli_rules
from bridge.cli import silences as cli_silences
from bridge.errors import BridgeError, ConfigAndRulesError, ConfigError, ProblemsError, RuleError

if TYPE_CHECKING:
    from bridge.config.models import Config
    from bridge.rules.engine import RuleSet

EXIT_OK, EXIT_INVALID, EXIT_RUNTIME = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="wattbridge", description="Webhook and notification bridge for energy-device APIs"
    )
    p.add_argument("--version", action="version", version=f"wattbridge {__version__}")
    p.add_argument(
        "--log-level",
        default=None,
        choices=["debug", "info", "warning", "error"],
        help="default: info (demo: warning)",
    )
    p.add_argument("--log-format", default="auto", choices=["auto", "console", "json"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bridge: poll, diff, evaluate rules, deliver, serve HTTP")
    run.add_argument("-c", "--config", required=True, help="path to the TOML config file")

    check = sub.add_parser("check", help="validate the config and rule files; open the store")
    check.add_argument("-c", "--config", required=True, help="path to the TOML config file")

    demo = sub.add_parser("demo", help="simulators + sinks + bridge on a temporary store, scripted scenario")
    demo.add_argument("--forever", action="store_true", help="keep running after the scenario until Ctrl-C")

    cli_silences.add_parsers(sub)
    cli_deliveries.add_parsers(sub)
    cli_rules.add_parsers(sub)
    cli_explain.add_parsers(sub)
    cli_acks.add_parsers(sub)

    sim = sub.add_parser("simulate", help="serve the provider simulators on loopback")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--podero-port", type=int, default=8801)
    sim.add_argument("--realto-port", type=int, default=8802)
    sim.add_argument("--wattshift-port", type=int, default=8803)
    sim.add_argument("--step", type=float, default=30.0, help="seconds between timeline steps")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo narrates for a person; its logs would drown the story unless asked for.
    level = args.log_level or {"demo": "warning", "rules": "error", "explain": "warning"}.get(
        args.command, "info"
    )
    logs.configure(level=level, fmt=args.log_format)
    try:
        if args.command == "check":
            return _check(args.config)
        if args.command == "run":
            return _run(args.config)
        if args.command == "demo":
            from bridge.cli.demo import run_demo

            return asyncio.run(run_demo(forever=args.forever))
        if args.command == "silences":
            return cli_silences.run(args)
        if args.command == "rules":
            return cli_rules.run(args)
        if args.command == "explain":
            return cli_explain.run(args)
        if args.command == "ack":
            return cli_acks.run(args)
        if args.command in ("deliveries", "channels"):
            return cli_deliveries.run(args)
        if args.command == "simulate":
            from bridge.simulator.serve import serve_simulators

            return asyncio.run(
                serve_simulators(
                    host=args.host,
                    podero_port=args.podero_port,
                    realto_port=args.realto_port,
                    wattshift_port=args.wattshift_port,
                    step_seconds=args.step,
                )
            )
    except ProblemsError as exc:
        _print_problems(exc)
        return EXIT_INVALID
    except KeyboardInterrupt:
        return EXIT_OK
    except BridgeError as exc:
        print(f"wattbridge: {logs.scrub(str(exc))}", file=sys.stderr)
        return EXIT_RUNTIME
    return EXIT_INVALID


def _print_problems(exc: ProblemsError) -> None:
    what = "config" if isinstance(exc, ConfigError) else "rules" if isinstance(exc, RuleError) else "input"
    for problem in exc.problems:
        print(logs.scrub(str(problem)), file=sys.stderr)
    if isinstance(exc, ConfigAndRulesError):
        c, r = exc.config_count, exc.rules_count
        print(f"wattbridge: {_count(c)} in the config and {_count(r)} in the rules", file=sys.stderr)
        return
    print(f"wattbridge: {_count(len(exc.problems))} in the {what}", file=sys.stderr)


def _count(n: int) -> str:
    return f"{n} problem{'s' if n != 1 else ''}"


def _check(path: str) -> int:
    from bridge.config.loader import load_config, rule_settings
    from bridge.notify.rulebook import load_for
    from bridge.rules.loader import load_rules
    from bridge.store.factory import probe

    try:
        config = load_config(path)
    except ConfigError as exc:
        # Report the rules' problems with the config's: fixing one typo should not reveal ten more.
        settings = rule_settings(path)
        if settings is not None:
            paths, base_dir, channels = settings
            try:
                load_rules(paths, base_dir=base_dir, channels=channels)
            except RuleError as rules_exc:
                raise ConfigAndRulesError(exc.problems, rules_exc.problems) from None
        raise
    rules = load_for(config)
    _check_body_templates(path, config, rules)
    asyncio.run(probe(config.store.url))  # what `run` would refuse: an unreachable store
    print(
        f"{path}: OK ({len(config.providers)} provider(s), {len(config.channels)} channel(s), "
        f"{len(rules.rules)} rule(s))"
    )
    linked = [r.id for r in rules.rules if r.acknowledgeable]
    if linked and config.server.public_url is None:  # not an error: the API and `ack` still work
        print(
            f"{path}: note: {len(linked)} rule(s) repeat or escalate ({', '.join(linked[:3])}"
            f"{', …' if len(linked) > 3 else ''}) but [server] public_url is unset: their "
            "notifications carry no acknowledge / snooze links",
        )
    return EXIT_OK


def _check_body_templates(path: str, config: Config, rules: RuleSet) -> None:
    """Every webhook body template rendered against a sample event of its rules' sources (#15)."""
    from pathlib import Path

    from bridge.config.tomlpos import TomlPositions, read_toml
    from bridge.contracts.template_check import body_template_problems

    _, text, _ = read_toml(Path(path))
    pos = TomlPositions(text)
    problems = body_template_problems(config, rules.rules, file=path, line_of=pos.line_of)
    if problems:
        raise ConfigError(problems)


def _run(path: str) -> int:
    from bridge.config.loader import load_config
    from bridge.serve import serve

    config = load_config(path)
    try:
        return asyncio.run(serve(config))
    except OSError as exc:  # e.g. the listen address is in use
        print(f"wattbridge: cannot start: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
