"""Secret canaries: a unique string in every secret field of the config must appear nowhere the bridge
writes or answers, through successes and failures alike: logs, /metrics, /healthz, /readyz, the
store on disk (dead letters, attempt errors, response excerpts), CLI output and exception text.

Peers that misbehave on purpose echo the credentials they were sent back in their error bodies, as
some real APIs and debugging receivers do. The admin API (/api/…) is not covered here: it is built
on another branch, with its own canary check.
"""

from __future__ import annotations

import base64
import secrets
import textwrap
import traceback
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bridge import errors, logs
from bridge.app import create_app
from bridge.app_keys import DELIVERY, POLLER, PROVIDERS, RULEBOOK, STORE
from bridge.cli.main import main
from bridge.config.loader import load_config
from bridge.config.models import Config
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.realto import RealtoSimulator
from bridge.simulator.sinks import WebhookSink
from bridge.simulator.wattshift import WattShiftSimulator
from tests.conftest import ORG


def _canary(field: str) -> str:
    return f"canary-{field}-{secrets.token_hex(8)}"


C = {
    f: _canary(f)
    for f in (
        "podero-client-id",
        "podero-client-secret",
        "podero-username",
        "podero-password",
        "realto-client-id",
        "realto-client-secret",
        "wattshift-api-key",
        "webhook",
        "smtp-password",
        "admin-token",
        "mqtt-password",
        "apprise-password",
        "alertmanager-token",
    )
}
WEBHOOK_SECRET = "whsec_" + base64.b64encode(C["webhook"].encode()).decode()
# What a leak could look like besides the plain value: the webhook key as configured and as the
# base64 text the HMAC key travels in, and Podero's HTTP Basic pair.
# The re.alto client id is left out: it is an identifier the provider itself returns as session data
# (`client.name`), which the bridge stores and forwards like any other field.
NEEDLES = [
    *(v for k, v in C.items() if k != "realto-client-id"),
    WEBHOOK_SECRET,
    WEBHOOK_SECRET.removeprefix("whsec_"),
    base64.b64encode(f"{C['podero-client-id']}:{C['podero-client-secret']}".encode()).decode(),
    base64.b64encode(f"bot:{C['apprise-password']}".encode()).decode(),  # Apprise's json:// Basic auth
]
ECHO = " ".join(C.values()) + " " + WEBHOOK_SECRET  # what a misbehaving peer sends back

RULES = """
[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
to = true
type = "wallbox.charging_started"
channels = ["partner", "echo", "ops", "mqtt", "chat", "am"]
"""


def leaks(texts: Iterable[str | bytes]) -> list[str]:
    """Each needle found, with the text around it (empty: nothing leaked)."""
    found = []
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for needle in NEEDLES:
            at = blob.find(needle)
            if at >= 0:
                found.append(f"{needle!r} in …{blob[max(0, at - 80) : at + len(needle) + 20]!r}")
    return found


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


@pytest.fixture
async def peers(aiohttp_server, clock, mailbox):
    podero = PoderoSimulator(
        clock=clock,
        org_id=ORG,
        client_id=C["podero-client-id"],
        client_secret=C["podero-client-secret"],
        username=C["podero-username"],
        password=C["podero-password"],
    )
    realto = RealtoSimulator(
        clock=clock, client_id=C["realto-client-id"], client_secret=C["realto-client-secret"]
    )
    wattshift = WattShiftSimulator(clock=clock, api_key=C["wattshift-api-key"])
    sink = WebhookSink(WEBHOOK_SECRET, clock=clock)

    async def echo(request: web.Request) -> web.Response:
        # A receiver that refuses everything and quotes the credentials back in its error body.
        # The Authorization header first, so it is inside the recorded excerpt (Alertmanager's bearer).
        auth = request.headers.get("Authorization")
        return web.Response(status=500, text=f"bad signature for {auth} {ECHO} {dict(request.headers)}")

    echo_app = web.Application()
    echo_app.router.add_post("/echo", echo)
    echo_app.router.add_post("/echo-apprise", echo)  # Apprise's json:// posts here
    echo_app.router.add_post("/api/v2/alerts", echo)  # as an Alertmanager would be
    servers = {}
    for name, app in [
        ("podero", podero.app()),
        ("realto", realto.app()),
        ("wattshift", wattshift.app()),
        ("sink", sink.app()),
        ("echo", echo_app),
    ]:
        servers[name] = str((await aiohttp_server(app)).make_url("")).rstrip("/")
    podero.base_url, wattshift.base_url = servers["podero"], servers["wattshift"]
    realto.base_url = servers["realto"] + "/api"
    sink.url = servers["sink"] + "/hooks/partner"
    return {"podero": podero, "realto": realto, "wattshift": wattshift, "sink": sink, "echo": servers["echo"]}


def canary_config(tmp_path: Path, peers, mailbox) -> Config:
    (tmp_path / "rules.toml").write_text(textwrap.dedent(RULES))
    podero = peers["podero"]
    user = podero.add_user(email="ada@example.com")
    wallbox = podero.add_wallbox(user, is_charging=False)
    common = {"max_requests_per_second": 1000}
    return Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
            "server": {"listen": "127.0.0.1:0", "admin_token": C["admin-token"]},
            "rules": {"paths": [str(tmp_path / "rules.toml")]},
            "providers": {
                "podero": {
                    "kind": "podero",
                    "base_url": podero.base_url,
                    "client_id": C["podero-client-id"],
                    "client_secret": C["podero-client-secret"],
                    "org_id": ORG,
                    "wallboxes": [{"user_id": user, "wallbox_id": wallbox}],
                    **common,
                },
                "podero_pw": {
                    "kind": "podero",
                    "base_url": podero.base_url,
                    "username": C["podero-username"],
                    "password": C["podero-password"],
                    "org_id": ORG,
                    "discover": True,
                    **common,
                },
                "realto": {
                    "kind": "realto",
                    "base_url": peers["realto"].base_url,
                    "client_id": C["realto-client-id"],
                    "client_secret": C["realto-client-secret"],
                    **common,
                },
                "wattshift": {
                    "kind": "wattshift",
                    "base_url": peers["wattshift"].base_url,
                    "api_key": C["wattshift-api-key"],
                    "discover": True,
                    **common,
                },
            },
            "channels": {
                "partner": {
                    "kind": "webhook",
                    "url": peers["sink"].url,
                    "secret": WEBHOOK_SECRET,
                    "retry": ["0s", "30s"],
                },
                "echo": {
                    "kind": "webhook",
                    "url": peers["echo"] + "/echo",
                    "secret": WEBHOOK_SECRET,
                    "retry": ["0s"],
                },
                "ops": {
                    "kind": "email",
                    "to": ["ops@example.com"],
                    "from": "bridge@example.com",
                    "retry": ["0s"],
                },
                "mqtt": {  # nobody listens on port 9 of loopback: a connection error
                    "kind": "mqtt",
                    "host": "127.0.0.1",
                    "port": 9,
                    "username": "wattbridge",
                    "password": C["mqtt-password"],
                    "retry": ["0s"],
                },
                "chat": {
                    "kind": "apprise",
                    "url": f"json://bot:{C['apprise-password']}@{peers['echo'].removeprefix('http://')}/echo-apprise",
                    "retry": ["0s"],
                },
                "am": {
                    "kind": "alertmanager",
                    "url": peers["echo"],
                    "bearer_token": C["alertmanager-token"],
                    "retry": ["0s"],
                },
            },
            "smtp": {
                "host": "127.0.0.1",
                "port": mailbox.port,
                "username": "ops",
                "password": C["smtp-password"],
            },
            "outbound": {"allow": ["127.0.0.0/8"]},
        }
    ).model_copy(update={"base_dir": str(tmp_path)})


async def test_no_secret_appears_in_logs_metrics_health_store_or_errors(
    tmp_path, peers, mailbox, clock, aiohttp_client, json_logs, capsys
):
    podero, realto, wattshift, sink = peers["podero"], peers["realto"], peers["wattshift"], peers["sink"]
    realto.add_session()
    wattshift.add_home()
    config = canary_config(tmp_path, peers, mailbox)
    app = create_app(config, clock=clock, start_scheduler=False)
    client = await aiohttp_client(app)
    poller, providers, store = app[POLLER], app[PROVIDERS], app[STORE]
    texts: list[str | bytes] = []

    async def poll_all() -> None:
        for provider in providers.values():
            for group in provider.watch_groups():
                await poller.poll(provider, group.name)

    # Successful polls (tokens fetched with every credential), then a change that fires a rule.
    await poll_all()
    [wallbox] = [w.key.resource_id for w in await store.list_watches(provider="podero")]
    podero.update_wallbox(wallbox, is_charging=True)
    sink.respond_with(500, 500)  # the partner fails twice: dead; echo and ops fail once: dead
    await poller.poll(providers["podero"], "wallboxes")
    await app[DELIVERY].run_until_idle()
    clock.advance(timedelta(seconds=40))
    await app[DELIVERY].run_until_idle()
    dead = {d.channel: d.last_error for d in await store.list_deliveries(status="dead")}
    assert dead.keys() == {"partner", "echo", "ops", "mqtt", "chat", "am"}
    assert "SMTP" in str(dead["ops"])  # the login with the SMTP password was refused
    [am] = await store.list_deliveries(channel="am")
    [am_attempt] = await store.list_attempts(am.id)
    assert str(am_attempt.response_excerpt).startswith(f"bad signature for Bearer {logs.REDACTED} ")

    # Failing polls: credentials refused (401) and server errors (500), the bodies echoing secrets.
    echo = ECHO.encode()
    podero.revoke_tokens()
    podero.fail("token", status=401, body=echo, times=2)
    realto.revoke_tokens()
    realto.fail("auth", status=401, body=echo)
    wattshift.fail("homes", status=401, body=echo)
    await poll_all()
    podero.fail("wallbox", status=500, body=echo)
    podero.fail("users", status=500, body=echo)
    realto.fail("list", status=500, body=echo)
    wattshift.fail("homes", status=500, body=echo)
    await poll_all()
    realto.fail("list", status=500, body=echo)
    with pytest.raises(errors.ProviderError) as raised:
        await providers["realto"].fetch("sessions", [])
    texts += exception_texts(raised.value)
    realto.revoke_tokens()
    realto.fail("auth", status=401, body=echo)
    with pytest.raises(errors.ProviderError) as raised:
        await providers["realto"].fetch("sessions", [])
    texts += exception_texts(raised.value)

    # A rule reload with errors (the last good set is kept).
    (tmp_path / "rules.toml").write_text(RULES + '\n[[rule]]\nid = "broken"\nsource = "podero.wallbox"\n')
    problem = app[RULEBOOK].reload()
    assert problem is not None
    texts += exception_texts(problem)

    for path in ("/healthz", "/readyz", "/metrics"):
        resp = await client.get(path)
        texts.append(await resp.text())
        texts.append(str(dict(resp.headers)))
    metrics = texts[-2]
    assert 'wattbridge_dead_letters{channel="partner"} 1.0' in metrics

    # What the store keeps of it all: dead letters, attempt errors and excerpts, health snapshots.
    for delivery in await store.list_deliveries(limit=1000):
        texts.append(repr(delivery))
        texts += [repr(a) for a in await store.list_attempts(delivery.id)]
    attempts_text = "".join(t for t in texts if isinstance(t, str) and "Attempt(" in t)
    assert "bad signature for" in attempts_text  # the echoing receiver's excerpt was recorded…
    texts += [p.read_bytes() for p in tmp_path.glob("bridge.db*")]  # …and the files on disk

    # What went over the wire to the partner: payloads and headers.
    texts += [r.body for r in sink.received] + [str(r.headers) for r in sink.received]

    logged = json_logs.getvalue()
    assert '"event":"poll.failed"' in logged
    assert '"event":"delivery.attempt"' in logged
    assert '"event":"rules.reload_refused"' in logged
    assert "credentials refused" in logged
    texts.append(logged)
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]

    assert leaks(texts) == []


def test_config_check_errors_name_the_key_but_never_the_secret(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PODERO_SECRET", C["podero-client-secret"])
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.toml").write_text('[[rule]]\nid = "x"\nsource = "podero.wallbox"\n')
    (tmp_path / "config.toml").write_text(
        textwrap.dedent(f"""
        [server]
        admin_token = "{C["admin-token"]}"
        admin_tokn = "{C["admin-token"]}"

        [providers.podero]
        kind = "podero"
        client_id = "{C["podero-client-id"]}"
        client_secret = "${{PODERO_SECRET}}"
        password = ["{C["podero-password"]}"]
        org_id = "{ORG}"
        max_concurrency = 0

        [providers.realto]
        kind = "realto"
        client_id = "{C["realto-client-id"]}"
        client_secret = {{ value = "{C["realto-client-secret"]}" }}

        [providers.wattshift]
        kind = "wattshift"
        api_key = 12345
        apikey = "{C["wattshift-api-key"]}"

        [channels.partner]
        kind = "webhok"
        url = "http://127.0.0.1:9/hooks"
        secret = "{WEBHOOK_SECRET}"

        [smtp]
        pasword = "{C["smtp-password"]}"
        """)
    )
    assert main(["check", "-c", str(tmp_path / "config.toml")]) == 1
    out = capsys.readouterr()
    assert "admin_tokn" in out.err  # the problems are reported, by key…
    assert "pasword" in out.err
    with pytest.raises(errors.ConfigError) as raised:
        load_config(tmp_path / "config.toml")
    texts = [out.out, out.err, *exception_texts(raised.value)]
    texts += [str(p) for p in raised.value.problems]
    # A TOML syntax error on the very line of a secret (an unterminated string).
    (tmp_path / "broken.toml").write_text(f'[server]\nadmin_token = "{C["admin-token"]}\n')
    assert main(["check", "-c", str(tmp_path / "broken.toml")]) == 1
    out = capsys.readouterr()
    assert "broken.toml:2" in out.err
    texts += [out.out, out.err]
    assert leaks(texts) == []  # …never by value
