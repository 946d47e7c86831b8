"""Signed links (#14): a link verifies only with its key, unaltered and before its expiry; the key
is `link_secret`, or one derived from the admin token; without a public_url there are none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.config.models import ServerConfig
from bridge.model import ResourceKey
from bridge.notify.links import LinkClaim, LinkError, LinkSigner

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
KEY = ResourceKey(provider="podero", source="podero.wallbox", resource_id="wb-1")


def signer(**server) -> LinkSigner:
    cfg = ServerConfig.model_validate({"public_url": "https://bridge.example.com/wb", **server})
    made = LinkSigner.from_config(cfg)
    assert made is not None
    return made


def claim(action="ack", **kw) -> LinkClaim:
    return LinkClaim(
        action=action, rule_id="r", key=KEY, firing_seq=3, expires_at=T0 + timedelta(days=7), **kw
    )


def test_a_link_round_trips_its_claim_under_the_public_url():
    s = signer(link_secret="s" * 32)
    url = s.url(claim("snooze", snooze=timedelta(hours=4), channel="ops"))
    assert url.startswith("https://bridge.example.com/wb/links/v1.")
    assert s.verify(url.rsplit("/", 1)[1], T0) == claim("snooze", snooze=timedelta(hours=4), channel="ops")


def test_a_changed_byte_another_key_or_a_cut_link_is_refused():
    s = signer(link_secret="s" * 32)
    token = s.token(claim())
    head, payload, mac = token.split(".")
    other = "A" if payload[5] != "A" else "B"
    with pytest.raises(LinkError) as tampered:
        s.verify(f"{head}.{payload[:5]}{other}{payload[6:]}.{mac}", T0)
    assert tampered.value.reason == "tampered"
    with pytest.raises(LinkError) as foreign:
        signer(link_secret="t" * 32).verify(token, T0)
    assert foreign.value.reason == "tampered"
    with pytest.raises(LinkError) as cut:
        s.verify(token[:40], T0)
    assert cut.value.reason in ("malformed", "tampered")


def test_a_link_expires_at_its_time():
    s = signer(link_secret="s" * 32)
    token = s.token(claim())
    assert s.verify(token, T0 + timedelta(days=7) - timedelta(seconds=1)).firing_seq == 3
    with pytest.raises(LinkError) as expired:
        s.verify(token, T0 + timedelta(days=7))
    assert expired.value.reason == "expired"


def test_the_key_derives_from_the_admin_token_and_no_public_url_means_no_links():
    by_token = signer(admin_token="admin-" * 4)
    assert by_token.verify(by_token.token(claim()), T0).rule_id == "r"
    with pytest.raises(LinkError):
        signer(admin_token="other-" * 4).verify(by_token.token(claim()), T0)
    assert LinkSigner.from_config(ServerConfig.model_validate({"admin_token": "x" * 20})) is None
    assert LinkSigner.from_config(ServerConfig.model_validate({"public_url": "https://b.example"})) is None


def test_the_links_of_a_notification_offer_each_snooze_length():
    s = signer(link_secret="s" * 32, snooze_durations=["30m", "2h"], link_ttl="1d")
    links = s.links("r", KEY, 3, channel="ops", now=T0)
    assert set(links) == {"acknowledge", "snooze", "expires_at"}
    assert list(links["snooze"]) == ["30m", "2h"]
    assert links["expires_at"] == "2026-11-23T21:00:00Z"
    snooze = s.verify(links["snooze"]["2h"].rsplit("/", 1)[1], T0)
    assert (snooze.action, snooze.snooze, snooze.channel) == ("snooze", timedelta(hours=2), "ops")


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ({"link_secret": "short"}, "at least 16 characters"),
        ({"link_ttl": "1m"}, "between 5m and 90d"),
        ({"public_url": "bridge.example.com"}, "should match pattern"),
        ({"snooze_durations": ["0s"]}, "longer than 0s"),
    ],
)
def test_bad_link_settings_are_config_errors(server, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig.model_validate(server)
