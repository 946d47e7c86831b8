"""`wattbridge ack`: acknowledge or snooze a firing, or list open firings, through the running
bridge's admin API (#14). Not the store directly: the running service owns the firing's timers, so
only it can stop a reminder that is about to go out."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import aiohttp
import orjson

from bridge.errors import BridgeError

EXIT_OK, EXIT_INVALID, EXIT_RUNTIME = 0, 1, 2


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ack",
        help="acknowledge or snooze a firing (stops its reminders and escalation), or list firings",
        description="Acknowledge (until it resolves) or snooze (--snooze 1h) a rule's firing on a "
        "resource, through the running bridge's admin API; --list shows the open firings.",
    )
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--rule", help="rule id")
    p.add_argument("--resource", help="resource id (as the provider names it)")
    p.add_argument("--provider", help="when several providers use the id")
    p.add_argument("--source", help="when several sources use the id")
    p.add_argument("--snooze", metavar="DURATION", help="snooze for this long (1h, 4h, 1d) instead")
    p.add_argument("--by", default=None, help="who acknowledges (default: your login name)")
    p.add_argument("--comment", default="")
    p.add_argument("--url", help="the bridge's base URL (default: http:// + [server] listen)")
    p.add_argument("--list", action="store_true", help="list open firings instead")
    p.add_argument("--json", action="store_true", help="print the API's JSON")


def run(args: argparse.Namespace) -> int:
    from bridge.config.loader import load_config

    config = load_config(args.config)
    token = config.server.admin_token
    if token is None or not token.get_secret_value():
        print(
            "wattbridge: ack needs [server] admin_token (the admin API is closed without it)", file=sys.stderr
        )
        return EXIT_INVALID
    if not args.list and (not args.rule or not args.resource):
        print("wattbridge: ack needs --rule and --resource (or --list)", file=sys.stderr)
        return EXIT_INVALID
    host, port = config.server.host, config.server.port
    host = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host  # noqa: S104
    base = (args.url or f"http://{host}:{port}").rstrip("/")
    if args.list:
        params = {k: v for k, v in (("rule", args.rule), ("resource", args.resource)) if v}
        status, body = asyncio.run(
            _call("GET", f"{base}/api/firings", token.get_secret_value(), params=params)
        )
    else:
        payload: dict[str, Any] = {
            "rule": args.rule,
            "resource_id": args.resource,
            "action": "snooze" if args.snooze else "ack",
            "by": args.by or _login(),
            "comment": args.comment,
        }
        payload |= {k: v for k, v in (("provider", args.provider), ("source", args.source)) if v}
        if args.snooze:
            payload["duration"] = args.snooze
        status, body = asyncio.run(_call("POST", f"{base}/api/acks", token.get_secret_value(), json=payload))
    if status >= 400:
        detail = body.get("detail") or body.get("title") if isinstance(body, dict) else body
        print(f"wattbridge: {detail}", file=sys.stderr)
        return EXIT_INVALID if status in (404, 409, 422) else EXIT_RUNTIME
    if args.json:
        print(orjson.dumps(body).decode())
    elif args.list:
        for f in body["items"]:
            print(_line(f))
        if not body["items"]:
            print("nothing is firing")
    else:
        print(_line(body))
    return EXIT_OK


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def _line(f: dict[str, Any]) -> str:
    where = f"{f['rule']} {f['source']} {f['resource_id']} (provider {f['provider']})"
    if f.get("acked_at"):
        return f"{where}: acknowledged by {f['acked_by']} at {f['acked_at']}"
    if f.get("paused"):
        return f"{where}: {f['paused']}"
    nxt = [f"next reminder {f['next_reminder_at']}"] if f.get("next_reminder_at") else []
    nxt += [f"next escalation {f['next_escalation_at']}"] if f.get("next_escalation_at") else []
    return f"{where}: firing since {f['since']}" + (f"; {', '.join(nxt)}" if nxt else "")


async def _call(method: str, url: str, token: str, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session,
            session.request(method, url, headers=headers, **kw) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, orjson.loads(text)
            except orjson.JSONDecodeError:
                return resp.status, text[:200]
    except aiohttp.ClientError as exc:
        raise BridgeError(f"cannot reach the bridge at {url}: {exc} (is `wattbridge run` up? --url)") from exc
