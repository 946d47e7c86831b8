"""Fixtures for the simulator's own tests: a Podero simulator on a ManualClock behind a test client."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge.clock import ManualClock
from bridge.simulator.podero import API, PoderoSimulator

ORG = "00000000-0000-4000-8000-000000000001"
BASIC = "Basic " + base64.b64encode(b"sim-client:sim-secret").decode()


@dataclass
class Podero:
    """The simulator, a client on it, and a valid bearer header."""

    sim: PoderoSimulator
    client: TestClient
    clock: ManualClock
    auth: dict[str, str]

    async def token(self) -> dict[str, Any]:
        resp = await self.client.post(
            "/oauth2/token/", json={"grant_type": "client_credentials"}, headers={"Authorization": BASIC}
        )
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def get(self, path: str, **params: str) -> Any:
        return await self.client.get(API + path, params=params, headers=self.auth)

    def wallbox_path(self, user_id: str, wallbox_id: str, org_id: str = ORG) -> str:
        return f"/org/{org_id}/users/{user_id}/wallboxes/{wallbox_id}"


@pytest.fixture
def sim_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def podero_api(aiohttp_client, sim_clock) -> Podero:
    sim = PoderoSimulator(clock=sim_clock, org_id=ORG)
    client = await aiohttp_client(sim.app())
    api = Podero(sim=sim, client=client, clock=sim_clock, auth={})
    api.auth = {"Authorization": "Bearer " + (await api.token())["access_token"]}
    return api


@pytest.fixture
def ada(podero_api: Podero) -> dict[str, str]:
    """One user with one plugged-in, idle wallbox."""
    user = podero_api.sim.add_user(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    wallbox = podero_api.sim.add_wallbox(user, is_plugged_in=True)
    return {"user_id": user, "wallbox_id": wallbox}
