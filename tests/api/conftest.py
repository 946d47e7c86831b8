"""The admin API on a live bridge: Podero and WattShift simulators, a verifying webhook sink, an SMTP
mailbox, a ManualClock, and canary secrets (unique strings that must never appear in a response)."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import ClientResponse

from bridge.config.models import Config
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.wattshift import WattShiftSimulator
from tests.conftest import DEFAULT_RULES, LOOPBACK, ORG, Bridge

ADMIN_TOKEN = "canary-admin-token-5b1e7c0d9a"
PODERO_CLIENT_SECRET = "canary-podero-secret-3f9a1d"
WATTSHIFT_API_KEY = "canary-wattshift-key-8c2e4b"
CANARIES = (ADMIN_TOKEN, PODERO_CLIENT_SECRET, WATTSHIFT_API_KEY)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

WATTSHIFT_RULES = """
[[rule]]
id = "wattshift-completed"
source = "wattshift.onboarding"
field = "status"
to = "COMPLETED"
type = "onboarding.completed"
channels = ["partner"]

[[rule]]
id = "podero-onboarding-finished"
source = "podero.onboarding_session"
event = "changed"
if = "old.object_id is none and new.object_id is not none"
channels = ["partner"]
"""


@pytest.fixture
async def podero(aiohttp_server, clock) -> PoderoSimulator:
    sim = PoderoSimulator(clock=clock, org_id=ORG, client_secret=PODERO_CLIENT_SECRET)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("")).rstrip("/")
    return sim


@pytest.fixture
async def wattshift(aiohttp_server, clock) -> WattShiftSimulator:
    sim = WattShiftSimulator(clock=clock, api_key=WATTSHIFT_API_KEY)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("")).rstrip("/")
    return sim


@pytest.fixture
def api_config(tmp_path, podero, wattshift, sink, mailbox, webhook_secret):
    def make(
        *,
        admin_token: str | None = ADMIN_TOKEN,
        wallboxes: list[dict[str, str]] | None = None,
        retry: list[str] | None = None,
    ) -> Config:
        rules_dir = tmp_path / "rules"
        rules_dir.mkdir(exist_ok=True)
        (rules_dir / "main.toml").write_text(
            textwrap.dedent(DEFAULT_RULES) + textwrap.dedent(WATTSHIFT_RULES)
        )
        server: dict[str, Any] = {"listen": "127.0.0.1:0"}
        if admin_token is not None:
            server["admin_token"] = admin_token
        data: dict[str, Any] = {
            "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
            "server": server,
            "rules": {"paths": [str(rules_dir / "*.toml")]},
            "providers": {
                "podero": {
                    "kind": "podero",
                    "base_url": podero.base_url,
                    "client_id": "sim-client",
                    "client_secret": PODERO_CLIENT_SECRET,
                    "org_id": ORG,
                    "max_requests_per_second": 1000,
                    "wallboxes": wallboxes or [],
                },
                "wattshift": {
                    "kind": "wattshift",
                    "base_url": wattshift.base_url,
                    "api_key": WATTSHIFT_API_KEY,
                    "max_requests_per_second": 1000,
                },
                "spare": {
                    "kind": "wattshift",
                    "base_url": wattshift.base_url,
                    "api_key": WATTSHIFT_API_KEY,
                    "enabled": False,
                },
            },
            "channels": {
                "partner": {"kind": "webhook", "url": sink.url, "secret": webhook_secret, "retry": retry},
                "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
            },
            "smtp": {"host": "127.0.0.1", "port": mailbox.port},
            "outbound": {"allow": LOOPBACK},
        }
        return Config.model_validate(data).model_copy(update={"base_dir": str(tmp_path)})

    return make


@dataclass
class Api:
    """The bridge plus an admin client that remembers every body it was sent (for the canary check)."""

    bridge: Bridge
    bodies: list[str]

    async def call(
        self, method: str, path: str, *, auth: bool = True, status: int | None = None, **kw: Any
    ) -> tuple[ClientResponse, Any]:
        headers = {**(AUTH if auth else {}), **kw.pop("headers", {})}
        resp = await self.bridge.client.request(method, path, headers=headers, **kw)
        text = await resp.text()
        self.bodies.append(text + "\n" + "\n".join(f"{k}: {v}" for k, v in resp.headers.items()))
        if status is not None:
            assert resp.status == status, text
        assert resp.content_type == "application/json", text
        return resp, await resp.json()

    async def get(self, path: str, **kw: Any) -> Any:
        return (await self.call("GET", path, status=kw.pop("status", 200), **kw))[1]

    async def post(self, path: str, body: Any = None, **kw: Any) -> Any:
        return (await self.call("POST", path, json=body, status=kw.pop("status", 200), **kw))[1]

    async def delete(self, path: str, **kw: Any) -> Any:
        return (await self.call("DELETE", path, status=kw.pop("status", 200), **kw))[1]


@pytest.fixture
def make_api(make_bridge):
    bodies: list[str] = []

    async def make(config: Config) -> Api:
        return Api(bridge=await make_bridge(config), bodies=bodies)

    return make


@pytest.fixture
async def api(make_api, api_config) -> Api:
    return await make_api(api_config())
