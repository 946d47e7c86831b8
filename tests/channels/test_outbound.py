"""Outbound safety (#15): webhook targets in loopback, private, link-local, metadata and other
non-global ranges are refused unless `[outbound] allow` lists them, at load for literal IPs and
after DNS resolution at send time. No traffic ever goes to a refused address: the refusal happens
before a connection is opened (the loopback sink sees nothing)."""

from __future__ import annotations

import ipaddress
import socket
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from bridge.channels.base import RenderContext
from bridge.channels.outbound import GuardedResolver, OutboundGuard, OutboundRefused
from bridge.channels.registry import channel_session
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.loader import load_config
from bridge.config.models import Config, WebhookChannelConfig
from bridge.contracts.samples import channel_test_event
from bridge.errors import ConfigError
from bridge.model import Delivery
from tests.conftest import WEBHOOK_SECRET


@pytest.mark.parametrize(
    ("address", "what"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local (cloud metadata)"),
        ("100.64.0.1", "shared address space"),
        ("0.0.0.0", "'this network'"),  # noqa: S104 -- an address under test, not a bind
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "unique-local"),
        ("::ffff:10.0.0.1", "private"),  # IPv4-mapped IPv6 is the IPv4 address
        ("224.0.0.1", "multicast"),
        ("198.18.0.1", "reserved"),
    ],
)
def test_non_global_addresses_are_refused_with_what_they_are(address, what):
    reason = OutboundGuard().refusal(ipaddress.ip_address(address))
    assert reason is not None
    assert what in reason


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "1.1.1.1"])
def test_global_addresses_are_allowed(address):
    assert OutboundGuard().refusal(ipaddress.ip_address(address)) is None


def test_an_allow_list_lets_exactly_its_networks_through():
    guard = OutboundGuard([ipaddress.ip_network("10.20.0.0/16"), ipaddress.ip_network("::1/128")])
    assert guard.refusal(ipaddress.ip_address("10.20.5.5")) is None
    assert guard.refusal(ipaddress.ip_address("::1")) is None
    assert guard.refusal(ipaddress.ip_address("10.21.0.1")) is not None
    assert guard.refusal(ipaddress.ip_address("127.0.0.1")) is not None  # loopback only when listed


CONFIG = """\
[store]
url = "sqlite:///{db}"

[outbound]
allow = {allow}

[channels.lan]
kind = "webhook"
url = "{url}"
secret = "whsec_ZGVmYXVsdA=="
"""


@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://10.0.0.5/hook", "10.0.0.5 is private"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254 is link-local (cloud metadata)"),
        ("http://[::1]:8080/hook", "::1 is loopback"),
        ("http://localhost:8080/hook", "127.0.0.1 is loopback"),
        ("https://[fd12::1]/hook", "fd12::1 is unique-local (private)"),
    ],
)
def test_a_literal_private_url_is_refused_at_load_with_file_line_and_key(tmp_path, url, what):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(db=tmp_path / "b.db", allow="[]", url=url))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [problem] = raised.value.problems
    assert str(problem).startswith(f"{path}:9: channels.lan.url: {what}: refused unless [outbound] allow")


def test_an_alertmanager_url_is_guarded_like_a_webhook(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "b.db"}"\n\n[channels.am]\nkind = "alertmanager"\n'
        'url = "http://192.168.1.20:9093"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert [str(p) for p in raised.value.problems] == [
        f"{path}:6: channels.am.url: 192.168.1.20 is private: refused unless [outbound] allow lists it "
        '(e.g. allow = ["192.168.1.20/32"])'
    ]


def test_a_listed_network_and_a_dns_name_pass_at_load(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(db=tmp_path / "b.db", allow='["10.0.0.0/8"]', url="http://10.0.0.5/h"))
    assert load_config(path).outbound.allow == [ipaddress.ip_network("10.0.0.0/8")]
    path.write_text(CONFIG.format(db=tmp_path / "b.db", allow="[]", url="https://hooks.partner.example/h"))
    load_config(path)  # a name is checked after resolution, at send time


def test_a_malformed_allow_entry_is_named(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(db=tmp_path / "b.db", allow='["10.0.0.1/8"]', url="https://x.example/h"))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert str(raised.value.problems[0]) == (
        f"{path}:5: outbound.allow[0]: value is not a valid IPv4 or IPv6 network"
    )


class Answers(AbstractResolver):
    """A DNS server's answer for names under test (no real name resolves to 10.x here)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=family, proto=0, flags=0)
            for ip in self.answers[host]
        ]

    async def close(self) -> None:
        pass


async def test_a_name_resolving_to_metadata_or_private_addresses_is_refused_before_connecting():
    resolver = GuardedResolver(OutboundGuard(), Answers({"evil.example": ["169.254.169.254", "10.0.0.7"]}))
    with pytest.raises(OutboundRefused) as raised:
        await resolver.resolve("evil.example", 80)
    assert "169.254.169.254 is link-local (cloud metadata)" in str(raised.value)
    assert "10.0.0.7 is private" in str(raised.value)


async def test_refused_addresses_are_dropped_from_an_answer_that_also_has_a_global_one():
    resolver = GuardedResolver(OutboundGuard(), Answers({"mixed.example": ["10.0.0.7", "93.184.216.34"]}))
    assert [r["host"] for r in await resolver.resolve("mixed.example", 443)] == ["93.184.216.34"]


def localhost_channel(sink, config: Config, session: aiohttp.ClientSession) -> WebhookChannel:
    url = sink.url.replace("127.0.0.1", "localhost")
    cfg = WebhookChannelConfig(kind="webhook", url=url, secret=WEBHOOK_SECRET)
    config = config.model_copy(update={"channels": {"partner": cfg}})
    return WebhookChannel.from_config("partner", cfg, config=config, session=session, clock=ManualClock())


def delivery_for(channel: WebhookChannel) -> Delivery:
    event = channel_test_event("partner")
    body = channel.render(event, RenderContext(old=None))
    return Delivery(
        id="msg_o", event_id=event.id, channel="partner", body=body,
        next_attempt_at=event.occurred_at, created_at=event.occurred_at,
    )  # fmt: skip


async def test_localhost_resolved_at_send_time_is_refused_and_nothing_reaches_the_receiver(sink):
    # The name `localhost` goes through the real resolver of the channels' session.
    config = Config.model_validate({})
    async with channel_session(config) as session:
        channel = localhost_channel(sink, config, session)
        result = await channel.send(delivery_for(channel))
    assert not result.ok
    assert not result.permanent  # a DNS answer can change: retried by the schedule
    assert result.error is not None
    assert result.error.startswith("outbound refused: localhost resolves to 127.0.0.1 is loopback")
    assert sink.received == []


async def test_localhost_allowed_explicitly_is_delivered(sink):
    config = Config.model_validate({"outbound": {"allow": ["127.0.0.0/8", "::1/128"]}})
    async with channel_session(config) as session:
        channel = localhost_channel(sink, config, session)
        result = await channel.send(delivery_for(channel))
    assert result.ok, result.error
    assert len(sink.verified) == 1


async def test_a_literal_refused_url_of_a_built_channel_fails_permanently_without_sending(sink):
    config = Config.model_validate({})
    cfg = WebhookChannelConfig(kind="webhook", url=sink.url, secret=WEBHOOK_SECRET)
    async with channel_session(config) as session:
        channel = WebhookChannel.from_config(
            "partner", cfg, config=config, session=session, clock=ManualClock()
        )
        result = await channel.send(delivery_for(channel))
    assert (result.ok, result.permanent) == (False, True)
    assert result.error == (
        "outbound refused: 127.0.0.1 is loopback: refused unless [outbound] allow lists it "
        '(e.g. allow = ["127.0.0.0/8"])'
    )
    assert sink.received == []


async def test_through_the_outbox_a_refused_target_is_recorded_as_an_attempt(
    make_config, make_bridge, sink, podero
):
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_plugged_in=True)
    channels = {
        "partner": {
            "kind": "webhook",
            "url": sink.url.replace("127.0.0.1", "localhost"),
            "secret": WEBHOOK_SECRET,
        },
        "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
    }
    bridge = await make_bridge(
        make_config(
            wallboxes=[{"user_id": user, "wallbox_id": wb}], channels=channels, outbound={"allow": []}
        )
    )
    await bridge.poll()
    podero.update_wallbox(wb, is_charging=True)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()
    [delivery] = await bridge.store.list_deliveries(channel="partner", limit=5)
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert attempt.error is not None
    assert "outbound refused: localhost resolves to" in attempt.error
    assert delivery.status == "pending"  # retried later, per the schedule
    assert sink.received == []
