"""`wattbridge deliveries list | show | replay` and `wattbridge channels test`, on the store a config
names (a real SQLite file) and a real webhook receiver."""

from __future__ import annotations

import asyncio
import textwrap
from dataclasses import replace

import orjson
import pytest

from bridge.cli.main import main
from bridge.model import Attempt
from bridge.simulator.sinks import WebhookSink
from bridge.store.sqlite import SqliteStore
from tests.conftest import WEBHOOK_SECRET
from tests.store.test_sqlite import T0, result


@pytest.fixture
async def receiver(aiohttp_server) -> WebhookSink:
    s = WebhookSink(WEBHOOK_SECRET)  # wall clock: the CLI signs with the real time
    server = await aiohttp_server(s.app())
    s.url = str(server.make_url("/hooks/partner"))
    return s


@pytest.fixture
def config(tmp_path, receiver) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(f"""
        [store]
        url = "sqlite:///{tmp_path / "b.db"}"
        [outbound]
        allow = ["127.0.0.0/8"]
        [channels.partner]
        kind = "webhook"
        url = "{receiver.url}"
        secret = "{WEBHOOK_SECRET}"
        """)
    )
    return str(path)


@pytest.fixture
async def dead_delivery(tmp_path, config) -> str:
    """One delivery that failed its last attempt and is dead."""
    store = SqliteStore(tmp_path / "b.db")
    await store.open()
    r = result()
    [d] = r.deliveries
    await store.commit([r, replace(result("wb-2"), events=(), deliveries=())])
    await store.record_attempt(
        Attempt(delivery_id=d.id, number=1, at=T0, ok=False, status_code=500, latency_ms=12.0,
                error="HTTP 500", response_excerpt="upstream broke"),
        status="dead",
        next_attempt_at=None,
    )  # fmt: skip
    await store.close()
    return d.id


async def cli(*argv: str) -> int:
    """The CLI runs its own event loop: give it a thread, so this test's loop keeps serving."""
    return await asyncio.to_thread(main, list(argv))


async def test_list_shows_dead_deliveries_and_show_gives_the_attempts(config, dead_delivery, capsys):
    assert await cli("deliveries", "list", "-c", config, "--status", "dead", "--json") == 0
    [row] = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["id"] == dead_delivery
    assert row["status"] == "dead"

    assert await cli("deliveries", "show", "-c", config, dead_delivery) == 0
    out = capsys.readouterr().out
    assert "rule charging-started" in out
    assert "is_charging: false -> true" in out
    assert "#1" in out
    assert "status=500" in out
    assert "upstream broke" in out

    assert await cli("deliveries", "show", "-c", config, "msg_nope") == 1


async def test_replay_by_id_and_by_channel_since_makes_dead_deliveries_pending(config, dead_delivery, capsys):
    assert await cli("deliveries", "replay", "-c", config, dead_delivery) == 0
    assert "1 delivery(ies) pending again" in capsys.readouterr().out
    assert await cli("deliveries", "list", "-c", config, "--status", "pending", "--json") == 0
    assert dead_delivery in capsys.readouterr().out

    # Already pending: a second replay by channel finds nothing dead.
    assert await cli("deliveries", "replay", "-c", config, "--channel", "partner", "--since", "3650d") == 0
    assert "0 delivery(ies)" in capsys.readouterr().out
    assert await cli("deliveries", "replay", "-c", config, "--channel", "partner") == 1
    assert await cli("deliveries", "replay", "-c", config, "msg_unknown") == 1
    assert "no such delivery" in capsys.readouterr().err


async def test_channels_test_sends_one_signed_notification_and_shows_the_attempt(config, receiver, capsys):
    assert await cli("channels", "test", "-c", config, "partner") == 0
    out = capsys.readouterr().out
    assert out.startswith("partner: ok status=204")
    [hook] = receiver.verified
    assert hook.json["type"] == "wattbridge.test"

    receiver.respond_with(503)
    assert await cli("channels", "test", "-c", config, "partner") == 2
    assert "FAILED status=503" in capsys.readouterr().out
    assert await cli("channels", "test", "-c", config, "nope") == 1
    assert "unknown channel 'nope' (known: partner)" in capsys.readouterr().err
