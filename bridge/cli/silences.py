"""`wattbridge silences add | list | expire`: mute notifications for a while, from a shell.

Works on the store named in the config, beside a running service (SQLite WAL allows a second
connection); the service reads active silences at every poll, so a new one applies from the next.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

import orjson

from bridge.clock import SystemClock
from bridge.config.models import parse_duration
from bridge.model import Silence
from bridge.notify.silences import SilenceError, new_silence
from bridge.store.base import Store

EXIT_OK, EXIT_INVALID = 0, 1


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    silences = sub.add_parser("silences", help="suppress notifications by rule, source or resource")
    verbs = silences.add_subparsers(dest="verb", required=True, metavar="VERB")

    add = verbs.add_parser("add", help="create a silence (prints its id)")
    add.add_argument("-c", "--config", required=True)
    add.add_argument("--rule", help="rule id (exact or glob, e.g. 'wallbox-*')")
    add.add_argument("--source", help="source (e.g. podero.wallbox)")
    add.add_argument("--resource", help="resource id (exact or glob)")
    add.add_argument("--starts", type=_time, help="start time, ISO 8601 (default: now)")
    end = add.add_mutually_exclusive_group(required=True)
    end.add_argument("--duration", type=parse_duration, help="how long, e.g. 2h")
    end.add_argument("--until", type=_time, help="end time, ISO 8601 with timezone")
    add.add_argument("--comment", required=True, help="why (shown to whoever looks next)")
    add.add_argument("--by", default="", help="who creates it")

    ls = verbs.add_parser("list", help="active and upcoming silences (--all: expired too)")
    ls.add_argument("-c", "--config", required=True)
    ls.add_argument("--all", action="store_true")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")

    expire = verbs.add_parser("expire", help="end a silence now")
    expire.add_argument("-c", "--config", required=True)
    expire.add_argument("id")


def _time(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone (add Z or +01:00)")
    return when


def run(args: argparse.Namespace) -> int:
    from bridge.app import open_store_for
    from bridge.config.loader import load_config

    config = load_config(args.config)
    return asyncio.run(_run(args, open_store_for(config)))


async def _run(args: argparse.Namespace, store: Store) -> int:
    now = SystemClock().now()
    await store.open()
    try:
        if args.verb == "add":
            try:
                silence = new_silence(
                    now=now,
                    rule=args.rule,
                    source=args.source,
                    resource=args.resource,
                    starts_at=args.starts,
                    ends_at=args.until,
                    duration=args.duration,
                    comment=args.comment,
                    created_by=args.by,
                )
            except SilenceError as exc:
                print(f"wattbridge: {exc}", file=sys.stderr)
                return EXIT_INVALID
            await store.add_silence(silence)
            print(silence.id)
            return EXIT_OK
        if args.verb == "list":
            found = await store.list_silences(active_after=None if args.all else now)
            for s in found:
                print(_json_line(s) if args.json else _line(s, now))
            if not found and not args.json:
                print("no silences")
            return EXIT_OK
        ended = await store.expire_silence(args.id, now)
        if not ended:
            print(f"wattbridge: no active silence {args.id!r}", file=sys.stderr)
            return EXIT_INVALID
        print(f"{args.id} expired")
        return EXIT_OK
    finally:
        await store.close()


def _line(s: Silence, now: datetime) -> str:
    state = "active" if s.active(now) else "expired" if s.ends_at <= now else "upcoming"
    matchers = " ".join(
        f"{k}={v}" for k, v in (("rule", s.rule), ("source", s.source), ("resource", s.resource)) if v
    )
    return (
        f"{s.id}  {state:8}  {s.starts_at.isoformat()} → {s.ends_at.isoformat()}  {matchers}"
        f"  {s.comment!r}{'  by ' + s.created_by if s.created_by else ''}"
    )


def _json_line(s: Silence) -> str:
    return orjson.dumps(
        {
            "id": s.id,
            "rule": s.rule,
            "source": s.source,
            "resource": s.resource,
            "starts_at": s.starts_at,
            "ends_at": s.ends_at,
            "comment": s.comment,
            "created_by": s.created_by,
            "created_at": s.created_at,
        }
    ).decode()
