"""Status-page sessions: stateless HMAC cookies derived from the admin token, CSRF tokens from them.

The cookie never holds the token. It holds `ISSUED.NONCE.MAC`, where MAC is keyed by a key derived
from the token: changing the token ends every session, and a session ends on its own after `ttl`.
Logging out revokes the session in memory too (a copied cookie dies with it until the process
restarts, and then by expiry). CSRF tokens are an HMAC of the session value: nothing to store.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

SESSION_TTL = timedelta(hours=12)
# The session key is not the token itself, so a MAC never acts as an oracle on the token.
_KEY_LABEL = b"wattbridge/status-page/session-key/v1"


class Sessions:
    """Issues, checks and revokes status-page sessions for one admin token."""

    def __init__(self, admin_token: str, *, ttl: timedelta = SESSION_TTL) -> None:
        if not admin_token:
            raise ValueError("an empty admin token cannot protect the status page")
        self._token = admin_token.encode()
        self._key = hmac.new(self._token, _KEY_LABEL, hashlib.sha256).digest()
        self._ttl = ttl
        self._revoked: dict[str, datetime] = {}  # session value -> when it would have expired anyway

    def token_matches(self, given: str) -> bool:
        """Constant-time comparison with the configured admin token."""
        return hmac.compare_digest(given.encode(), self._token)

    def issue(self, now: datetime) -> str:
        issued = str(int(now.timestamp()))
        nonce = secrets.token_urlsafe(16)  # url-safe base64: never contains the "." separator
        return f"{issued}.{nonce}.{self._mac('session', issued, nonce)}"

    def valid(self, value: str | None, now: datetime) -> bool:
        if not value:
            return False
        parts = value.split(".")
        if len(parts) != 3 or not parts[0].isdigit():
            return False
        issued, nonce, mac = parts
        if not hmac.compare_digest(mac, self._mac("session", issued, nonce)):
            return False
        age = now.timestamp() - int(issued)
        return -60 <= age < self._ttl.total_seconds() and value not in self._revoked

    def revoke(self, value: str, now: datetime) -> None:
        self._revoked = {v: until for v, until in self._revoked.items() if until > now}
        self._revoked[value] = now + self._ttl

    def csrf(self, session: str) -> str:
        """The CSRF token of one session (what every form of that session must post back)."""
        return self._mac("csrf", session)

    def csrf_matches(self, session: str, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf(session).encode())

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._key, "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()
