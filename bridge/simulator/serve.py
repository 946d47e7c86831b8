"""`wattbridge simulate`: the three provider simulators on loopback, seeded to match config.example.toml.

A scripted timeline walks the seeded resources through their life (a wallbox plugs in, charges, needs
action and is fixed; a heat pump needs action; an EV's boost is requested and starts; a Realto command
runs to Succeeded and the next one fails; a Realto session and a WattShift home complete onboarding),
one step every `step_seconds`, so a partner can watch `wattbridge run` notify.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

from aiohttp import web

from bridge.clock import SystemClock
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.realto import RealtoSimulator
from bridge.simulator.wattshift import WattShiftSimulator

ORG = "00000000-0000-4000-8000-000000000001"
USER = "00000000-0000-4000-8000-0000000000a1"
WALLBOX = "00000000-0000-4000-8000-0000000000b1"
HEAT_PUMP = "00000000-0000-4000-8000-0000000000d1"
ELECTRIC_VEHICLE = "00000000-0000-4000-8000-0000000000e1"
REALTO_ENTITY = "00000000-0000-4000-8000-0000000000f1"  # its commands are listed (command_entities)
REALTO_SESSION = "00000000-0000-4000-8000-0000000000c1"
WATTSHIFT_HOME = "ws_home_0123456789abcdef0123456789abcdef"


def seeded_podero() -> PoderoSimulator:
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    sim.add_user(user_id=USER, email="ada@example.com", first_name="Ada")
    sim.add_wallbox(USER, wallbox_id=WALLBOX, is_plugged_in=False, is_charging=False)
    sim.add_heat_pump(USER, device_id=HEAT_PUMP)
    sim.add_electric_vehicle(USER, device_id=ELECTRIC_VEHICLE, boost_state="available")
    return sim


def seeded_realto() -> RealtoSimulator:
    sim = RealtoSimulator(clock=SystemClock())
    sim.add_session(session_id=REALTO_SESSION)
    return sim


class _CommandScript:
    """The timeline's Realto commands: one runs to Succeeded, the next one fails."""

    def __init__(self, realto: RealtoSimulator) -> None:
        self.realto = realto
        self.current = ""

    def send(self, type: str) -> None:
        self.current = self.realto.add_command(REALTO_ENTITY, type=type)

    def succeed(self) -> None:
        while self.realto.advance_command(self.current) != "Succeeded":
            pass

    def fail(self) -> None:
        self.realto.advance_command(self.current)  # Triggered
        self.realto.fail_command(self.current, "OemRejected", "The vehicle refused: not plugged in.")


def timeline(
    podero: PoderoSimulator, realto: RealtoSimulator, wattshift: WattShiftSimulator
) -> list[tuple[str, Callable[[], object]]]:
    """The scripted steps, repeated in a loop."""
    commands = _CommandScript(realto)
    return [
        ("podero: plugged in", lambda: podero.update_wallbox(WALLBOX, is_plugged_in=True)),
        ("podero: charging", lambda: podero.update_wallbox(WALLBOX, is_charging=True, charge_rate_w=7200)),
        ("wattshift: onboarding started", lambda: wattshift.start(WATTSHIFT_HOME)),
        ("podero: action needed (reauthenticate)", lambda: podero.add_action(WALLBOX, code="reauthenticate")),
        ("realto: onboarding succeeded", lambda: realto.succeed(REALTO_SESSION)),
        ("podero: heat pump needs action", lambda: podero.add_device_action(HEAT_PUMP, "reauthenticate")),
        (
            "podero: EV boost requested",
            lambda: podero.update_device(ELECTRIC_VEHICLE, boost_state="requested"),
        ),
        ("realto: StartCharging sent", lambda: commands.send("StartCharging")),
        (
            "podero: EV boost ongoing, charging",
            lambda: podero.update_device(ELECTRIC_VEHICLE, boost_state="ongoing", is_charging=True),
        ),
        ("realto: StartCharging succeeded", commands.succeed),
        ("realto: StopCharging sent", lambda: commands.send("StopCharging")),
        ("realto: StopCharging failed", commands.fail),
        ("podero: action resolved", lambda: podero.resolve_action(WALLBOX, "reauthenticate")),
        ("wattshift: onboarding completed", lambda: wattshift.complete(WATTSHIFT_HOME)),
        (
            "podero: charging stopped, unplugged",
            lambda: podero.update_wallbox(WALLBOX, is_charging=False, is_plugged_in=False),
        ),
    ]


async def serve_simulators(
    *,
    host: str = "127.0.0.1",
    podero_port: int = 8801,
    realto_port: int = 8802,
    wattshift_port: int = 8803,
    step_seconds: float = 30.0,
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    podero = seeded_podero()
    realto = seeded_realto()
    wattshift = WattShiftSimulator(clock=SystemClock())
    wattshift.add_home(home_id=WATTSHIFT_HOME)
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for app, port, what in (
            (
                podero.app(),
                podero_port,
                f"Podero    org {ORG}, wallbox {WALLBOX}, heat pump {HEAT_PUMP}, EV {ELECTRIC_VEHICLE}",
            ),
            (
                realto.app(),
                realto_port,
                f"Realto    base_url …:{realto_port}/api, session {REALTO_SESSION}, entity {REALTO_ENTITY}",
            ),
            (wattshift.app(), wattshift_port, f"WattShift home {WATTSHIFT_HOME}"),
        ):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, host, port).start()
            print(f"{what} on http://{host}:{port}", flush=True)  # noqa: T201
        steps = timeline(podero, realto, wattshift)
        i = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=step_seconds)
            if stop.is_set():
                break
            name, change = steps[i % len(steps)]
            with contextlib.suppress(KeyError, ValueError):  # a repeated step may not apply twice
                change()
            print(f"timeline: {name}", flush=True)  # noqa: T201
            i += 1
    finally:
        for runner in runners:
            await runner.cleanup()
    return 0
