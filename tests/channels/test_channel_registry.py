"""build_channels makes one channel per [channels.NAME] table, by kind."""

from __future__ import annotations

import typing

import aiohttp

from bridge.channels.email import EmailChannel
from bridge.channels.registry import CHANNEL_KINDS, build_channels
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import ChannelConfig, Config


async def test_build_channels_makes_each_configured_channel_by_kind():
    config = Config.model_validate(
        {
            "channels": {
                "partner": {
                    "kind": "webhook",
                    "url": "https://partner.example/hook",
                    "secret": "whsec_c2VjcmV0",
                },
                "ops": {"kind": "email", "to": ["ops@example.com"], "from": "bridge@example.com"},
            },
            "smtp": {"host": "127.0.0.1", "port": 2525},
        }
    )
    async with aiohttp.ClientSession() as session:
        channels = build_channels(config, session=session, clock=ManualClock())

    assert set(channels) == {"partner", "ops"}
    assert isinstance(channels["partner"], WebhookChannel)
    assert isinstance(channels["ops"], EmailChannel)
    assert (channels["partner"].name, channels["partner"].kind) == ("partner", "webhook")
    assert (channels["ops"].name, channels["ops"].kind) == ("ops", "email")


def test_every_config_kind_has_a_channel_class():
    union = typing.get_args(typing.get_args(ChannelConfig)[0])
    config_kinds = {typing.get_args(model.model_fields["kind"].annotation)[0] for model in union}
    assert config_kinds == {"webhook", "email", "mqtt", "apprise", "alertmanager"}
    assert set(CHANNEL_KINDS) == config_kinds
