"""Real local peers for the tests: the Podero simulator, a verifying webhook sink, an SMTP mailbox,
and a factory that builds the bridge on them with a ManualClock (STYLE.md §9 rules 12, 14, 15)."""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient

from bridge import logs
from bridge.app import _register_static_watches, create_app
from bridge.app_keys import DELIVERY, DIGESTER, POLLER, PROVIDERS, STORE
from bridge.clock import Clock, ManualClock
from bridge.config.models import Config
from bridge.model import ResourceKey
from bridge.notify.rulebook import RuleBook, load_for
from bridge.poll.cycle import Poller
from bridge.poll.health import HealthBoard
from bridge.poll.summary import PollSummary
from bridge.providers.podero import PoderoProvider
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.sinks import MailSink, WebhookSink
from bridge.store.base import Store

ORG = "00000000-0000-4000-8000-000000000001"
LOOPBACK = ["127.0.0.0/8", "::1/128"]
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"wattbridge-test-secret-0123456789").decode()


@pytest.fixture
def webhook_secret() -> str:
    return WEBHOOK_SECRET


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def podero(aiohttp_server, clock) -> PoderoSimulator:
    sim = PoderoSimulator(clock=clock, org_id=ORG)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("")).rstrip("/")
    return sim


@pytest.fixture
async def sink(aiohttp_server, clock) -> WebhookSink:
    s = WebhookSink(WEBHOOK_SECRET, clock=clock)
    server = await aiohttp_server(s.app())
    s.url = str(server.make_url("/hooks/partner"))
    return s


@pytest.fixture
async def mailbox():
    box = MailSink()
    await box.start()
    yield box
    await box.stop()


DEFAULT_RULES = """
[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
from = false
to = true
type = "wallbox.charging_started"
channels = ["partner"]

[[rule]]
id = "wallbox-action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
severity = "warning"
type = "wallbox.action_needed"
channels = ["partner", "ops"]

[rule.email]
subject = "Wallbox {{ new.device_model.model }} of {{ new.owner.email }} needs action"
body = "Actions: {% for a in new.actions %}{{ a.code }} {% endfor %}"
"""


@dataclass
class Bridge:
    """A running bridge app plus handles to drive it deterministically."""

    client: TestClient
    app: web.Application
    clock: ManualClock

    @property
    def store(self) -> Store:
        return self.app[STORE]

    async def poll(self, group: str = "wallboxes", provider: str = "podero") -> PollSummary:
        """Run one poll of a watch group now (what the scheduler does on its timetable)."""
        return await self.app[POLLER].poll(self.app[PROVIDERS][provider], group)

    async def poll_all(self) -> list[PollSummary]:
        """One poll of every watch group of every provider."""
        summaries = []
        for provider in self.app[PROVIDERS].values():
            for group in provider.watch_groups():
                summaries.append(await self.app[POLLER].poll(provider, group.name))
        return summaries

    async def deliver(self) -> int:
        """Send everything due now; returns the number of attempts."""
        return await self.app[DELIVERY].run_until_idle()

    async def tick(self) -> int:
        """Act on the rule timers (holds, reminders) due now; returns the events they caused."""
        return await self.app[POLLER].tick()

    async def digest(self) -> int:
        """Queue the email digests due now; returns how many."""
        return await self.app[DIGESTER].tick()


@pytest.fixture(params=["sqlite", "postgres"])
async def store_cfg(request) -> AsyncIterator[dict[str, Any]]:
    """`make_config(**store_cfg)` runs a test on each store: the default SQLite file, then a fresh
    PostgreSQL schema (skipped, saying why, without WATTBRIDGE_TEST_PG)."""
    if request.param == "sqlite":
        yield {}
        return
    from tests.store.conftest import pg_schema  # only the PostgreSQL half needs it

    async with pg_schema() as (url, schema):
        yield {"store": {"url": f"{url}?search_path={schema}"}}


@pytest.fixture
def make_config(tmp_path, podero, sink, mailbox) -> Callable[..., Config]:
    def make(
        *, rules: str = DEFAULT_RULES, wallboxes: list[dict[str, str]] | None = None, **extra: Any
    ) -> Config:
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "test.toml").write_text(textwrap.dedent(rules))
        data: dict[str, Any] = {
            "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
            "server": {"listen": "127.0.0.1:0"},
            "rules": {"paths": [str(rules_dir / "*.toml")]},
            "providers": {
                "podero": {
                    "kind": "podero",
                    "base_url": podero.base_url,
                    "client_id": "sim-client",
                    "client_secret": "sim-secret",
                    "org_id": ORG,
                    "max_requests_per_second": 1000,
                    "wallboxes": wallboxes or [],
                }
            },
            "channels": {
                "partner": {"kind": "webhook", "url": sink.url, "secret": WEBHOOK_SECRET},
                "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
            },
            "smtp": {"host": "127.0.0.1", "port": mailbox.port},
            "outbound": {"allow": LOOPBACK},  # the sinks are on loopback, refused unless allowed
        }
        data.update(extra)
        return Config.model_validate(data).model_copy(update={"base_dir": str(tmp_path)})

    return make


@pytest.fixture
def make_bridge(aiohttp_client, clock) -> Callable[[Config], Any]:
    async def make(config: Config) -> Bridge:
        app = create_app(config, clock=clock, start_scheduler=False)
        client = await aiohttp_client(app)
        return Bridge(client=client, app=app, clock=clock)

    return make


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _uncached_loggers(monkeypatch) -> Iterator[None]:
    """Tests that call `cli.main()` configure structlog for the whole process; a logger cached then
    would keep that configuration in every later test. So loggers are never cached in tests, and
    each test ends with structlog's defaults back."""
    monkeypatch.setattr(logs, "configure", functools.partial(logs.configure, cache=False))
    yield
    structlog.reset_defaults()


@pytest.fixture
def json_logs() -> io.StringIO:
    """Everything logged during the test, as the JSON lines a non-terminal gets (debug level, redacted)."""
    stream = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=stream)
    return stream


@contextlib.asynccontextmanager
async def podero_poller(
    config: Config, store: Store, clock: Clock, **poller_args: Any
) -> AsyncIterator[tuple[Poller, PoderoProvider]]:
    """A Poller over the real Podero provider of `config`, its config watches registered in `store`
    (as the app does at start), and no channels: what the poller-level tests drive by hand."""
    cfg = config.providers["podero"]
    session = aiohttp.ClientSession(middlewares=(PoderoProvider.middleware("podero", cfg, clock),))
    provider = PoderoProvider("podero", cfg, session=session, clock=clock)
    await _register_static_watches(store, [provider], clock.now())
    rulebook = RuleBook(config, load_for(config))
    poller = Poller(
        store=store, rulebook=rulebook, channels={}, clock=clock, health=HealthBoard(), **poller_args
    )
    try:
        yield poller, provider
    finally:
        await session.close()


def wallbox_key(resource_id: str) -> ResourceKey:
    return ResourceKey(source="podero.wallbox", provider="podero", resource_id=resource_id)
