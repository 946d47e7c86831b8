"""`wattbridge explain --rule ID --resource ID`: why a rule did (or did not) notify about a resource.

It opens the store the config names (beside a running service, as `deliveries` does) and prints the
last evaluations from the persisted traces (#14), as `GET /api/explain` returns them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import orjson

from bridge.explain.report import DEFAULT_EVALUATIONS, Evaluation, explain, render, unknown_rule
from bridge.store.base import Store

EXIT_OK, EXIT_INVALID = 0, 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "explain",
        help="why did (or didn't) a rule notify about a resource: its last evaluations",
        description="The last evaluations of a rule on a resource: the change seen, each condition, "
        "what stopped it, and the deliveries with their attempts.",
    )
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--rule", required=True, help="rule id")
    p.add_argument("--resource", required=True, help="resource id (as the provider names it)")
    p.add_argument("--provider", help="narrow to one provider instance")
    p.add_argument("--source", help="narrow to one source, e.g. podero.wallbox")
    p.add_argument("--limit", type=int, default=DEFAULT_EVALUATIONS, help="evaluations to show")
    p.add_argument("--json", action="store_true", help="one JSON object per evaluation")


def run(args: argparse.Namespace) -> int:
    from bridge.app import open_store_for
    from bridge.config.loader import load_config
    from bridge.notify.rulebook import load_for

    config = load_config(args.config)
    known = load_for(config).by_id
    found = asyncio.run(_read(open_store_for(config), args))
    if not found and args.rule not in known:
        print(f"wattbridge: {unknown_rule(args.rule, known)}", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        for ev in found:
            print(_as_json(ev))
    else:
        print(render(args.rule, args.resource, found), end="")
    return EXIT_OK


async def _read(s: Store, args: argparse.Namespace) -> list[Evaluation]:
    await s.open()
    try:
        return await explain(
            s, args.rule, args.resource, provider=args.provider, source=args.source, limit=args.limit
        )
    finally:
        await s.close()


def _as_json(ev: Evaluation) -> str:
    t = ev.trace
    return orjson.dumps(
        {
            "at": t.at.isoformat(),
            "trigger": t.trigger,
            "resource": str(t.key),
            "outcome": t.outcome,
            "reasons": list(t.reasons),
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in t.changes],
            "checks": [{"name": c.name, "want": c.want, "got": c.got, "ok": c.ok} for c in t.checks],
            "deliveries": [
                {
                    "id": s.delivery.id,
                    "channel": s.delivery.channel,
                    "status": s.delivery.status,
                    "attempts": [
                        {"number": a.number, "at": a.at.isoformat(), "ok": a.ok, "status_code": a.status_code}
                        for a in s.attempts
                    ],
                }
                for s in ev.deliveries
            ],
        },
        default=str,
    ).decode()
