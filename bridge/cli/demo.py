"""`wattbridge demo`: the whole product on one machine, narrated for a person.

Starts the Podero and Realto simulators, a webhook sink that verifies Standard Webhooks signatures, an
SMTP mailbox, and the bridge itself (real scheduler, real SQLite outbox in a temporary folder), then walks
a wallbox, a heat pump, an electric vehicle and a Realto command through a scripted scenario and prints
each notification as it is delivered.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import tempfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from bridge.clock import SystemClock
from bridge.config.models import Config
from bridge.serve import started
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.realto import RealtoSimulator
from bridge.simulator.sinks import MailSink, WebhookSink

ORG = "00000000-0000-4000-8000-000000000001"
WALLBOX = "00000000-0000-4000-8000-0000000000b1"
HEAT_PUMP = "00000000-0000-4000-8000-0000000000d1"
ELECTRIC_VEHICLE = "00000000-0000-4000-8000-0000000000e1"
ENTITY = "00000000-0000-4000-8000-0000000000f1"  # a Realto entity whose commands are listed
POLL_SECONDS = 1.0
STEP_TIMEOUT = 15.0

REPO_RULES = Path(__file__).resolve().parents[2] / "rules"  # bridge/cli/demo.py → the checkout's rules/
# Used when the package runs outside its source tree (no rules/ folder beside it).
FALLBACK_RULES = """
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
body = "Pending actions: {% for a in new.actions %}{{ a.code }} {% endfor %}"

[[rule]]
id = "heat-pump-action-needed"
source = "podero.heat_pump"
field = "action_needed"
to = true
severity = "warning"
type = "heat_pump.action_needed"
channels = ["partner", "ops"]

[rule.email]
subject = "Heat pump {{ new.device_model.model }} needs action"
body = "Pending actions: {% for a in new.actions %}{{ a.code }} {% endfor %}"

[[rule]]
id = "ev-charging-started"
source = "podero.electric_vehicle"
field = "is_charging"
from = false
to = true
type = "electric_vehicle.charging_started"
channels = ["partner"]

[[rule]]
id = "realto-command-succeeded"
source = "realto.command"
field = "status"
to = "Succeeded"
type = "command.succeeded"
channels = ["partner"]
"""


@contextlib.asynccontextmanager
async def _serve(app: web.Application) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


def _js(value: Any) -> str:
    return orjson.dumps(value).decode()


def _say(text: str) -> None:
    print(text, flush=True)


class Narrator:
    """Prints every notification the sinks receive, once, in arrival order."""

    def __init__(self, hooks: WebhookSink, mail: MailSink) -> None:
        self.hooks, self.mail = hooks, mail
        self.shown_hooks = 0
        self.shown_mail = 0

    def show_new(self) -> int:
        shown = 0
        for hook in self.hooks.received[self.shown_hooks :]:
            data: dict[str, Any] = hook.json.get("data", {}) if isinstance(hook.json, dict) else {}
            changes = ", ".join(
                f"{c['field']}: {_js(c['old'])} → {_js(c['new'])}" for c in data.get("changes", [])
            )
            mark = "signature verified" if hook.verified else "SIGNATURE INVALID"
            _say(
                f"   ⇒ webhook  {hook.json.get('type')} (rule {data.get('rule')}, seq {data.get('sequence')})"
            )
            _say(f"              webhook-id {hook.webhook_id}  {mark}")
            if changes:
                _say(f"              {changes}")
            shown += 1
        self.shown_hooks = len(self.hooks.received)
        for message in self.mail.messages[self.shown_mail :]:
            _say(f"   ⇒ email    to {message['To']}: {message['Subject']}")
            for line in message.get_content().strip().splitlines()[:6]:
                _say(f"              | {line}")
            shown += 1
        self.shown_mail = len(self.mail.messages)
        return shown


def _config(
    tmp: Path, podero_port: int, realto_port: int, hook_url: str, secret: str, smtp_port: int
) -> Config:
    if REPO_RULES.is_dir() and any(REPO_RULES.glob("*.toml")):
        rule_paths = [str(REPO_RULES / "*.toml")]
        base_dir = str(REPO_RULES.parent)
    else:
        (tmp / "rules.toml").write_text(textwrap.dedent(FALLBACK_RULES))
        rule_paths, base_dir = [str(tmp / "rules.toml")], str(tmp)
    return Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp / 'demo.db'}", "synchronous": "NORMAL"},
            "server": {"listen": "127.0.0.1:0", "drain_timeout": "3s"},
            "rules": {"paths": rule_paths},
            "providers": {
                "podero": {
                    "kind": "podero",
                    "base_url": f"http://127.0.0.1:{podero_port}",
                    "client_id": "sim-client",
                    "client_secret": "sim-secret",
                    "org_id": ORG,
                    "poll_interval": f"{POLL_SECONDS}s",
                    "wallboxes": [{"user_id": _DemoState.user_id, "wallbox_id": WALLBOX}],
                    "heat_pumps": [{"user_id": _DemoState.user_id, "heat_pump_id": HEAT_PUMP}],
                    "electric_vehicles": [
                        {"user_id": _DemoState.user_id, "electric_vehicle_id": ELECTRIC_VEHICLE}
                    ],
                },
                "realto": {
                    "kind": "realto",
                    "base_url": f"http://127.0.0.1:{realto_port}/api",
                    "client_id": "sim-client",
                    "client_secret": "sim-secret",
                    "poll_interval": f"{POLL_SECONDS}s",
                    "list_guided_sessions": False,
                    "command_entities": [ENTITY],
                },
            },
            "channels": {
                "partner": {"kind": "webhook", "url": hook_url, "secret": secret},
                "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
            },
            "smtp": {"host": "127.0.0.1", "port": smtp_port},
            # The demo's sinks are on loopback, which webhooks may only reach when allowed.
            "outbound": {"allow": ["127.0.0.0/8", "::1/128"]},
        }
    ).model_copy(update={"base_dir": base_dir})


class _DemoState:
    user_id = "00000000-0000-4000-8000-0000000000a1"


async def run_demo(*, forever: bool = False) -> int:
    """Run the scripted scenario; returns 0 when every expected notification arrived."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    sim.add_user(user_id=_DemoState.user_id, email="ada@example.com", first_name="Ada")
    sim.add_wallbox(_DemoState.user_id, wallbox_id=WALLBOX, is_plugged_in=False, is_charging=False)
    sim.add_heat_pump(_DemoState.user_id, device_id=HEAT_PUMP)
    sim.add_electric_vehicle(_DemoState.user_id, device_id=ELECTRIC_VEHICLE, boost_state="available")
    realto = RealtoSimulator(clock=SystemClock())
    hooks = WebhookSink(secret)
    mail = MailSink()
    await mail.start()
    narrator = Narrator(hooks, mail)
    ok = True
    try:
        with tempfile.TemporaryDirectory(prefix="wattbridge-demo-") as tmpdir:
            async with (
                _serve(sim.app()) as podero_port,
                _serve(realto.app()) as realto_port,
                _serve(hooks.app()) as hook_port,
            ):
                config = _config(
                    Path(tmpdir),
                    podero_port,
                    realto_port,
                    f"http://127.0.0.1:{hook_port}/hooks/partner",
                    secret,
                    mail.port,
                )
                async with started(config) as bridge:
                    _say("Wattbridge demo")
                    _say(f"  Podero simulator  http://127.0.0.1:{podero_port}")
                    _say(f"  Realto simulator  http://127.0.0.1:{realto_port}/api")
                    _say(
                        f"  webhook sink     http://127.0.0.1:{hook_port}/hooks/partner (verifies signatures)"
                    )
                    _say(f"  SMTP mailbox      127.0.0.1:{mail.port}")
                    _say(f"  bridge            http://127.0.0.1:{bridge.port}  (healthz, readyz)")
                    _say(
                        f"  polling a wallbox, a heat pump, an EV and a Realto entity's commands every "
                        f"{POLL_SECONDS:g}s; the first poll is the baseline\n"
                    )
                    ok = await _scenario(sim, realto, hooks, mail, narrator)
                    if forever:
                        _say("\nScenario done; the bridge keeps running. Change the wallbox with e.g.")
                        _say(
                            f"  curl -X POST http://127.0.0.1:{podero_port}/_sim/wallboxes/{WALLBOX} "
                            "-d '{\"is_charging\": false}'"
                        )
                        _say("Press Ctrl-C to stop.")
                        while not bridge.stop.is_set():
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(bridge.stop.wait(), timeout=0.5)
                            narrator.show_new()
    finally:
        await mail.stop()
    _say(
        "\nDemo finished: " + ("every notification arrived." if ok else "SOME NOTIFICATIONS DID NOT ARRIVE.")
    )
    return 0 if ok else 2


class _Command:
    """The Realto command the scenario sends and follows."""

    def __init__(self, realto: RealtoSimulator) -> None:
        self.realto, self.id = realto, ""

    def send(self) -> None:
        self.id = self.realto.add_command(ENTITY, type="StartCharging")

    def succeed(self) -> None:
        while self.realto.advance_command(self.id) != "Succeeded":
            pass


async def _scenario(
    sim: PoderoSimulator, realto: RealtoSimulator, hooks: WebhookSink, mail: MailSink, narrator: Narrator
) -> bool:
    await asyncio.sleep(POLL_SECONDS * 2.5)  # the first (jittered) poll is the baseline
    command = _Command(realto)
    steps: list[tuple[str, Any, int, int]] = [
        (
            "1. the car is plugged in (no rule fires on this)",
            lambda: sim.update_wallbox(WALLBOX, is_plugged_in=True),
            0,
            0,
        ),
        (
            "2. charging starts",
            lambda: sim.update_wallbox(WALLBOX, is_charging=True, charge_rate_w=7200),
            1,
            0,
        ),
        (
            "3. the manufacturer link lapses: a `reauthenticate` action appears",
            lambda: sim.add_action(WALLBOX, code="reauthenticate"),
            1,
            1,
        ),
        (
            "4. the owner re-authenticates: the action is resolved",
            lambda: sim.resolve_action(WALLBOX, "reauthenticate"),
            -1,
            -1,
        ),
        (
            "5. the heat pump's manufacturer link lapses too",
            lambda: sim.add_device_action(HEAT_PUMP, "reauthenticate"),
            1,
            1,
        ),
        (
            "6. the partner sends a Realto StartCharging command to the EV (pending: no rule fires)",
            command.send,
            0,
            0,
        ),
        ("7. the command succeeds", command.succeed, 1, 0),
        (
            "8. the EV starts charging",
            lambda: sim.update_device(ELECTRIC_VEHICLE, is_plugged_in=True, is_charging=True),
            1,
            0,
        ),
    ]
    ok = True
    for title, change, hooks_expected, mails_expected in steps:
        _say(f"▶ {title}")
        before_h, before_m = len(hooks.received), len(mail.messages)
        change()
        if hooks_expected < 0:
            await asyncio.sleep(POLL_SECONDS * 2.5)
        else:
            try:
                if hooks_expected:
                    await hooks.wait_for(before_h + hooks_expected, timeout=STEP_TIMEOUT)
                if mails_expected:
                    await mail.wait_for(before_m + mails_expected, timeout=STEP_TIMEOUT)
                if not hooks_expected and not mails_expected:
                    await asyncio.sleep(POLL_SECONDS * 2.5)
            except TimeoutError:
                _say("   ✗ expected notification did not arrive in time")
                ok = False
        if narrator.show_new() == 0:
            _say("   (no notification: no rule matches this change)")
    _say(f"\n{len(hooks.received)} webhook(s) and {len(mail.messages)} email(s) delivered.")
    _say("Webhook bodies are Standard Webhooks envelopes, e.g.:")
    if hooks.received:
        body = dict(hooks.received[0].json)
        body["data"] = {**body["data"], "state": "{…the wallbox's full current state…}"}
        _say(textwrap.indent(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode(), "   "))
    return ok
