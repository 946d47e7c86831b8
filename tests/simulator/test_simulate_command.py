"""`wattbridge simulate`: the three simulators served by the real command, seeded so that the
providers of config.example.toml find their resources, walking the timeline, and stopping on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from bridge.clock import SystemClock
from bridge.config.loader import load_config
from bridge.config.models import PoderoConfig, RealtoConfig, WattShiftConfig
from bridge.model import ResourceKey, Watch
from bridge.providers.podero import PoderoProvider
from bridge.providers.realto import RealtoProvider
from bridge.providers.wattshift import WattShiftProvider
from bridge.simulator.serve import (
    ELECTRIC_VEHICLE,
    HEAT_PUMP,
    REALTO_SESSION,
    WALLBOX,
    WATTSHIFT_HOME,
)

ROOT = Path(__file__).resolve().parents[2]


async def _line(proc: asyncio.subprocess.Process, startswith: str) -> str:
    assert proc.stdout is not None
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert raw, f"simulate exited before printing {startswith!r}"
        line = raw.decode().strip()
        if line.startswith(startswith):
            return line


async def test_simulate_serves_what_the_example_config_watches_and_exits_0_on_sigterm(
    unused_tcp_port_factory,
):
    ports = [unused_tcp_port_factory() for _ in range(3)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "simulate", "--podero-port", str(ports[0]),
        "--realto-port", str(ports[1]), "--wattshift-port", str(ports[2]), "--step", "0.2",
        stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        await _line(proc, "WattShift")  # the last of the three to start
        config = load_config(ROOT / "config.example.toml", environ={})
        clock = SystemClock()
        podero_cfg = config.providers["podero"]
        realto_cfg = config.providers["realto"]
        wattshift_cfg = config.providers["wattshift"]
        assert isinstance(podero_cfg, PoderoConfig)
        assert isinstance(realto_cfg, RealtoConfig)
        assert isinstance(wattshift_cfg, WattShiftConfig)
        podero_cfg = podero_cfg.model_copy(update={"base_url": f"http://127.0.0.1:{ports[0]}"})
        realto_cfg = realto_cfg.model_copy(update={"base_url": f"http://127.0.0.1:{ports[1]}/api"})
        wattshift_cfg = wattshift_cfg.model_copy(update={"base_url": f"http://127.0.0.1:{ports[2]}"})
        async with (
            aiohttp.ClientSession(
                middlewares=(PoderoProvider.middleware("podero", podero_cfg, clock),)
            ) as ps,
            aiohttp.ClientSession(
                middlewares=(RealtoProvider.middleware("realto", realto_cfg, clock),)
            ) as rs,
            aiohttp.ClientSession() as ws,
        ):
            podero = PoderoProvider("podero", podero_cfg, session=ps, clock=clock)
            watches = [
                Watch(
                    key=ResourceKey(source=s, provider="podero", resource_id=r),
                    params=p,
                    created_at=clock.now(),
                )
                for s, r, p in podero.static_watches()
            ]
            wallboxes = await podero.fetch("wallboxes", watches)
            heat_pumps = await podero.fetch("heat_pumps", watches)
            evs = await podero.fetch("electric_vehicles", watches)
            realto = RealtoProvider("realto", realto_cfg, session=rs, clock=clock)
            sessions = await realto.fetch("sessions")
            commands = await realto.fetch("command_windows")
            homes = await WattShiftProvider("wattshift", wattshift_cfg, session=ws, clock=clock).fetch(
                "homes"
            )

        assert [o.key.resource_id for o in wallboxes.observations] == [WALLBOX]
        assert [o.key.resource_id for o in sessions.observations] == [REALTO_SESSION]
        assert [o.key.resource_id for o in homes.observations] == [WATTSHIFT_HOME]
        assert [o.key.resource_id for o in heat_pumps.observations] == [HEAT_PUMP]
        assert [o.key.resource_id for o in evs.observations] == [ELECTRIC_VEHICLE]
        assert commands.observations == []  # the entity's command window is listed; no command yet
        assert wallboxes.failures == sessions.failures == homes.failures == commands.failures == {}
        assert await _line(proc, "timeline:") == "timeline: podero: plugged in"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_every_timeline_step_applies_once_in_order():
    """The loop suppresses a step that cannot apply twice; the first pass must apply every one."""
    from bridge.simulator.serve import REALTO_ENTITY, seeded_podero, seeded_realto, timeline
    from bridge.simulator.wattshift import WattShiftSimulator

    podero, realto = seeded_podero(), seeded_realto()
    wattshift = WattShiftSimulator(clock=SystemClock())
    wattshift.add_home(home_id=WATTSHIFT_HOME)
    for _name, change in timeline(podero, realto, wattshift):
        change()  # raises on a step that does not apply

    assert podero.device(HEAT_PUMP)["action_needed"] is True
    assert podero.device(ELECTRIC_VEHICLE)["boost_state"] == "ongoing"
    statuses = [c["status"] for c in realto.state()["commands"].values()]
    assert sorted(statuses) == ["Failed", "Succeeded"]
    assert all(c["entity_id"] == REALTO_ENTITY for c in realto.state()["commands"].values())
