"""`wattbridge deliveries list | show | replay` and `wattbridge channels test | enable`: the outbox from
a shell.

They open the store the config names, beside a running service if there is one (SQLite WAL allows
a second connection): a replayed delivery becomes pending again and the service's worker sends it,
with the same `webhook-id` and the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace
from datetime import UTC, datetime

import orjson

from bridge import errors
from bridge.clock import SystemClock
from bridge.config.models import Config, parse_duration
from bridge.model import CHANNEL_PROVIDER, CHANNEL_SOURCE, Delivery, Event, PollResult, ResourceKey, event_id
from bridge.store.base import Store

EXIT_OK, EXIT_INVALID, EXIT_RUNTIME = 0, 1, 2
STATUSES = ("pending", "delivered", "dead", "suppressed", "held", "digested")
REPLAY_ALL = 100_000  # `--channel --since` replays at most this many at once


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    deliveries = sub.add_parser("deliveries", help="inspect the outbox; replay notifications")
    verbs = deliveries.add_subparsers(dest="verb", required=True, metavar="VERB")

    ls = verbs.add_parser("list", help="newest first")
    ls.add_argument("-c", "--config", required=True)
    ls.add_argument("--status", choices=STATUSES)
    ls.add_argument("--channel")
    ls.add_argument("--limit", type=int, default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")

    show = verbs.add_parser("show", help="one delivery, its event and every attempt")
    show.add_argument("-c", "--config", required=True)
    show.add_argument("id")

    replay = verbs.add_parser("replay", help="send again (same webhook-id, same body)")
    replay.add_argument("-c", "--config", required=True)
    replay.add_argument("ids", nargs="*", metavar="ID")
    replay.add_argument("--channel", help="with --since: every dead delivery of this channel")
    replay.add_argument("--since", type=_since, help="a duration ago (2h) or an ISO 8601 time")
    replay.add_argument("--status", choices=("dead", "delivered", "suppressed"), default="dead")

    channels = sub.add_parser("channels", help="channel tools")
    cverbs = channels.add_subparsers(dest="verb", required=True, metavar="VERB")
    test = cverbs.add_parser("test", help="send a test notification through one channel now")
    test.add_argument("-c", "--config", required=True)
    test.add_argument("name")
    enable = cverbs.add_parser("enable", help="re-enable a channel a 410 Gone disabled (service stopped)")
    enable.add_argument("-c", "--config", required=True)
    enable.add_argument("name")


def _since(text: str) -> datetime:
    try:
        return SystemClock().now() - parse_duration(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: neither a duration (2h) nor an ISO time") from exc
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no timezone (add Z or +01:00)")
    return when


def run(args: argparse.Namespace) -> int:
    from bridge.app import open_store_for
    from bridge.config.loader import load_config

    config = load_config(args.config)
    if args.command == "channels" and args.verb == "enable":
        return asyncio.run(_channel_enable(config, args.name, open_store_for(config)))
    if args.command == "channels":
        return asyncio.run(_channel_test(config, args.name))
    return asyncio.run(_deliveries(args, open_store_for(config)))


async def _deliveries(args: argparse.Namespace, store: Store) -> int:
    await store.open()
    try:
        if args.verb == "list":
            found = await store.list_deliveries(status=args.status, channel=args.channel, limit=args.limit)
            for d in found:
                print(_json(d) if args.json else _line(d))
            if not found and not args.json:
                print("no deliveries")
            return EXIT_OK
        if args.verb == "show":
            return await _show(store, args.id)
        return await _replay(store, args)
    finally:
        await store.close()


async def _show(store: Store, delivery_id: str) -> int:
    d = await store.get_delivery(delivery_id)
    if d is None:
        print(f"wattbridge: no delivery {delivery_id!r}", file=sys.stderr)
        return EXIT_INVALID
    print(_line(d))
    if d.last_error:
        print(f"  last error: {d.last_error}")
    event = await store.get_event(d.event_id)
    if event is not None:
        print(
            f"  event {event.id}: rule {event.rule_id} ({event.status}, {event.severity}) on "
            f"{event.key} sequence {event.sequence} at {event.occurred_at.isoformat()}"
        )
        for c in event.changes:
            print(f"    {c.field}: {_value(c.old)} -> {_value(c.new)}")
    attempts = await store.list_attempts(d.id)
    print(f"  attempts: {len(attempts)}")
    for a in attempts:
        outcome = "ok" if a.ok else "failed"
        code = a.status_code if a.status_code is not None else "-"
        print(f"    #{a.number} {a.at.isoformat()} {outcome} status={code} {a.latency_ms:.0f} ms")
        if a.error:
            print(f"      error: {a.error}")
        if a.response_excerpt:
            print(f"      response: {a.response_excerpt[:200]!r}")
    return EXIT_OK


async def _replay(store: Store, args: argparse.Namespace) -> int:
    """The same replay as the API and the status page (bridge/deliver/replay.py). This process cannot
    see the service's channels, so a disabled one is read from the `bridge.channel` state it stores."""
    from bridge.deliver.replay import disabled_in_store, replay, replay_deliveries

    ids: list[str] = list(args.ids)
    if ids and (args.channel or args.since):
        print("wattbridge: give delivery ids, or --channel with --since, not both", file=sys.stderr)
        return EXIT_INVALID
    now = SystemClock().now()
    try:
        if ids:
            channels = [d.channel for i in ids if (d := await store.get_delivery(i)) is not None]
            disabled = await disabled_in_store(store, channels)
            asked = len(dict.fromkeys(ids))
            replayed = await replay(store, ids, now, disabled=disabled, by="cli")
        else:
            if not (args.channel and args.since):
                print("wattbridge: give delivery ids, or --channel C --since T", file=sys.stderr)
                return EXIT_INVALID
            found = await store.list_deliveries(status=args.status, channel=args.channel, limit=REPLAY_ALL)
            chosen = [d for d in found if d.created_at >= args.since]
            disabled = await disabled_in_store(store, [args.channel])
            asked = len(chosen)
            replayed = await replay_deliveries(store, chosen, now, disabled=disabled, by="cli")
    except errors.ReplayRefused as exc:
        print(f"wattbridge: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"{replayed} delivery(ies) pending again" + (f" of {asked} asked" if replayed != asked else ""))
    return EXIT_OK


async def _channel_test(config: Config, name: str) -> int:
    from bridge.channels.base import RenderContext
    from bridge.channels.registry import build_channels, channel_session

    if name not in config.channels:
        known = ", ".join(sorted(config.channels)) or "none"
        print(f"wattbridge: unknown channel {name!r} (known: {known})", file=sys.stderr)
        return EXIT_INVALID
    clock = SystemClock()
    now = clock.now()
    key = ResourceKey(source=CHANNEL_SOURCE, provider=CHANNEL_PROVIDER, resource_id=name)
    event = Event(
        id=event_id("wattbridge.test", key, 0, now),
        rule_id="wattbridge.test",
        type="wattbridge.test",
        status="firing",
        severity="info",
        key=key,
        sequence=0,
        changes=(),
        state={"channel": name, "message": "A test notification from `wattbridge channels test`."},
        occurred_at=now,
    )
    async with channel_session(config) as session:
        channel = build_channels(config, session=session, clock=clock)[name]
        try:
            ctx = RenderContext(
                old=None,
                rule_description="Test notification",
                email_subject=f"Wattbridge test notification ({name})",
                email_body=f"This is a test notification from wattbridge through channel {name!r}.\n",
            )
            delivery = Delivery(
                id="msg_test_" + event.id.removeprefix("evt_"),
                event_id=event.id,
                channel=name,
                body=channel.render(event, ctx),
                next_attempt_at=now,
                created_at=now,
            )
            result = await channel.send(delivery)
        finally:
            await channel.close()
    code = result.status_code if result.status_code is not None else "-"
    print(
        f"{name}: {'ok' if result.ok else 'FAILED'} status={code} {result.latency_ms:.0f} ms id={delivery.id}"
    )
    if result.error:
        print(f"  error: {result.error}")
    if result.response_excerpt:
        print(f"  response: {result.response_excerpt[:200]!r}")
    return EXIT_OK if result.ok else EXIT_RUNTIME


async def _channel_enable(config: Config, name: str, store: Store) -> int:
    """Write the stored `bridge.channel` state back to `ok`, so the next start sends again (#14).
    A running service keeps what it knows in memory: re-enable it through the API or status page."""
    from bridge.poll.diff import meaningful_digest

    if name not in config.channels:
        known = ", ".join(sorted(config.channels)) or "none"
        print(f"wattbridge: unknown channel {name!r} (known: {known})", file=sys.stderr)
        return EXIT_INVALID
    key = ResourceKey(source=CHANNEL_SOURCE, provider=CHANNEL_PROVIDER, resource_id=name)
    await store.open()
    try:
        snap = await store.get_snapshot(key)
        if snap is None or snap.state is None or snap.state.get("status") != "disabled":
            print(f"{name}: not disabled; nothing changed")
            return EXIT_OK
        state = {
            **snap.state,
            "status": "ok",
            "consecutive_failures": 0,
            "last_error": None,
            "paused_until": None,
        }
        digest = meaningful_digest(state, source=CHANNEL_SOURCE, keep=frozenset())
        now = SystemClock().now()
        written = replace(snap, state=state, digest=digest, updated_at=now, version=snap.version + 1)
        try:  # the next version: a service writing it at this instant wins, and we say so
            await store.commit([PollResult(snapshot=written)])
        except errors.CommitConflict:
            print(
                f"wattbridge: {name} changed while enabling it (is the service running?); try again",
                file=sys.stderr,
            )
            return EXIT_RUNTIME
    finally:
        await store.close()
    print(
        f"{name}: enabled; it sends again from the next start. If the service is running, re-enable it "
        f"there too: POST /api/channels/{name}/enable (or the status page's Enable button)"
    )
    return EXIT_OK


def _line(d: Delivery) -> str:
    return (
        f"{d.id}  {d.status:10}  {d.channel:12}  attempts={d.attempts}  "
        f"created={_short(d.created_at)}  next={_short(d.next_attempt_at)}  event={d.event_id}"
    )


def _short(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(v: object) -> str:
    return orjson.dumps(v, default=str).decode()


def _json(d: Delivery) -> str:
    return orjson.dumps(
        {
            "id": d.id,
            "event_id": d.event_id,
            "channel": d.channel,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": d.next_attempt_at,
            "created_at": d.created_at,
            "last_error": d.last_error,
        }
    ).decode()
