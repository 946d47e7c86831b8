"""Channel registry: config kind → channel class, one explicit dict (adding Slack is one line here)."""

from __future__ import annotations

from typing import Protocol

import aiohttp

from bridge import __version__
from bridge.channels.alertmanager import AlertmanagerChannel
from bridge.channels.apprise import AppriseChannel
from bridge.channels.base import Channel
from bridge.channels.email import EmailChannel
from bridge.channels.mqtt import MqttChannel
from bridge.channels.outbound import GuardedResolver, OutboundGuard
from bridge.channels.webhook import WebhookChannel
from bridge.clock import Clock
from bridge.config.models import ChannelConfig, Config


class ChannelClass(Protocol):
    """What a channel class offers the registry: a constructor from its config entry."""

    def from_config(
        self,
        name: str,
        cfg: ChannelConfig,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> Channel: ...


CHANNEL_KINDS: dict[str, ChannelClass] = {
    "webhook": WebhookChannel,
    "email": EmailChannel,
    "mqtt": MqttChannel,
    "apprise": AppriseChannel,
    "alertmanager": AlertmanagerChannel,
}


def channel_session(config: Config) -> aiohttp.ClientSession:
    """The HTTP session channels share; its resolver refuses private addresses (`outbound.py`)."""
    guard = OutboundGuard(config.outbound.allow)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(guard))
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": f"Wattbridge/{__version__}"})


def build_channels(config: Config, *, session: aiohttp.ClientSession, clock: Clock) -> dict[str, Channel]:
    """One channel per `[channels.NAME]` table. The HTTP session is the app's, shared by webhooks."""
    channels: dict[str, Channel] = {}
    for name, cfg in config.channels.items():
        cls = CHANNEL_KINDS.get(cfg.kind)
        if cls is None:
            known = ", ".join(sorted(CHANNEL_KINDS))
            raise ValueError(f"channels.{name}: unknown kind {cfg.kind!r} (known: {known})")
        channels[name] = cls.from_config(name, cfg, config=config, session=session, clock=clock)
    return channels
