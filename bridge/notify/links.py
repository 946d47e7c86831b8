"""Signed, expiring acknowledge and snooze links (#14).

A link is `{public_url}/links/{token}`; the token is `v1.PAYLOAD.MAC`: PAYLOAD is base64url JSON
naming the action (`ack` or `snooze` with its length), the firing (rule, resource, firing sequence),
the channel it was sent to and its expiry; MAC is base64url HMAC-SHA256 of `v1.PAYLOAD` under the
link key. The key is `[server] link_secret`, or one derived from `admin_token` (so rotating the
token retires every link, and a MAC never acts as an oracle on the token itself). Nothing is
stored per link: whether the firing is still open is asked of the rule state when it is used, so
an acknowledge link dies with its firing, and every link dies at its expiry (`link_ttl`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson

from bridge.config.models import ServerConfig
from bridge.config.types import format_duration
from bridge.model import ResourceKey

Action = Literal["ack", "snooze"]
_VERSION = "v1"
_KEY_LABEL = b"wattbridge/links/key/v1"


class LinkError(Exception):
    """A link that cannot be used: `reason` is `malformed`, `tampered` or `expired`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkClaim:
    """What a verified link says: do `action` on this firing, until `expires_at`."""

    action: Action
    rule_id: str
    key: ResourceKey
    firing_seq: int
    expires_at: datetime
    snooze: timedelta | None = None
    channel: str | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, key: bytes, *, base_url: str, ttl: timedelta, snoozes: tuple[timedelta, ...]) -> None:
        self._key = key
        self.base_url = base_url.rstrip("/")
        self.ttl = ttl
        self.snoozes = snoozes

    @classmethod
    def from_config(cls, server: ServerConfig) -> LinkSigner | None:
        """None without a `public_url` or without a key to sign with: notifications carry no links."""
        if server.public_url is None:
            return None
        if server.link_secret is not None:
            key = hashlib.sha256(server.link_secret.get_secret_value().encode()).digest()
        elif server.admin_token is not None and server.admin_token.get_secret_value():
            key = hmac.new(
                server.admin_token.get_secret_value().encode(), _KEY_LABEL, hashlib.sha256
            ).digest()
        else:
            return None
        return cls(
            key, base_url=server.public_url, ttl=server.link_ttl, snoozes=tuple(server.snooze_durations)
        )

    def _mac(self, signed: str) -> str:
        return _b64(hmac.new(self._key, signed.encode(), hashlib.sha256).digest())

    def token(self, claim: LinkClaim) -> str:
        body: dict[str, Any] = {
            "a": claim.action,
            "r": claim.rule_id,
            "p": claim.key.provider,
            "s": claim.key.source,
            "i": claim.key.resource_id,
            "f": claim.firing_seq,
            "x": int(claim.expires_at.timestamp()),
        }
        if claim.snooze is not None:
            body["d"] = int(claim.snooze.total_seconds())
        if claim.channel is not None:
            body["c"] = claim.channel
        signed = f"{_VERSION}.{_b64(orjson.dumps(body))}"
        return f"{signed}.{self._mac(signed)}"

    def url(self, claim: LinkClaim) -> str:
        return f"{self.base_url}/links/{self.token(claim)}"

    def verify(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a genuine, unexpired token; LinkError otherwise (checked in that order, so an
        expired link's contents are only believed once its MAC is right)."""
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != _VERSION or len(token) > 4096:
            raise LinkError("malformed", "this is not a Wattbridge link (it may have been cut short)")
        signed = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(parts[2], self._mac(signed)):
            raise LinkError("tampered", "this link's signature does not match: it was altered or is not ours")
        try:
            body = orjson.loads(_unb64(parts[1]))
            action = body["a"]
            if action not in ("ack", "snooze"):
                raise ValueError(action)
            claim = LinkClaim(
                action=action,
                rule_id=str(body["r"]),
                key=ResourceKey(provider=str(body["p"]), source=str(body["s"]), resource_id=str(body["i"])),
                firing_seq=int(body["f"]),
                expires_at=datetime.fromtimestamp(int(body["x"]), tz=UTC),
                snooze=timedelta(seconds=int(body["d"])) if "d" in body else None,
                channel=str(body["c"]) if "c" in body else None,
            )
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as exc:
            raise LinkError("malformed", "this link's contents cannot be read") from exc
        if claim.action == "snooze" and claim.snooze is None:
            raise LinkError("malformed", "this snooze link has no length")
        if now >= claim.expires_at:
            raise LinkError("expired", f"this link expired at {_iso(claim.expires_at)}")
        return claim

    def links(
        self, rule_id: str, key: ResourceKey, firing_seq: int, *, channel: str, now: datetime
    ) -> dict[str, Any]:
        """The links one notification carries (the webhook envelope's `data.links`)."""
        expires = now.astimezone(UTC).replace(microsecond=0) + self.ttl

        def claim(action: Action, snooze: timedelta | None = None) -> LinkClaim:
            return LinkClaim(
                action=action,
                rule_id=rule_id,
                key=key,
                firing_seq=firing_seq,
                expires_at=expires,
                snooze=snooze,
                channel=channel,
            )

        return {
            "acknowledge": self.url(claim("ack")),
            "snooze": {format_duration(d): self.url(claim("snooze", d)) for d in self.snoozes},
            "expires_at": _iso(expires),
        }


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def link_html(links: dict[str, Any] | None) -> str:
    """The links as a paragraph for an HTML email part ("" without links)."""
    if not links:
        return ""
    snoozes = " ".join(
        f'<a href="{html.escape(url)}">{html.escape(n)}</a>' for n, url in links["snooze"].items()
    )
    ack = html.escape(links["acknowledge"])
    return f'\n<p><a href="{ack}">Acknowledge</a> (stops reminders and escalation) · Snooze: {snoozes}</p>\n'


def link_lines(links: dict[str, Any] | None) -> list[str]:
    """The links as text lines, for emails, Apprise and Alertmanager descriptions."""
    if not links:
        return []
    lines = ["", f"Acknowledge (stops reminders and escalation): {links['acknowledge']}"]
    lines += [f"Snooze {length}: {url}" for length, url in links["snooze"].items()]
    lines.append(f"(links valid until {links['expires_at']}; acknowledge until this firing resolves)")
    return lines
