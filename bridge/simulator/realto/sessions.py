"""The Realto simulator's guided onboarding sessions (providers.md §2): the seed-003
`GuidedOnboardingSession` shape in stable key order, read by id or listed page by page with opaque
continuation tokens over a snapshot taken at the first page (so paging never skips or repeats a session).
"""

from __future__ import annotations

import binascii
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import orjson
from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import iso_z, json_response
from bridge.simulator.realto.common import API, b64url, not_found, problem, unb64url

SESSIONS = f"{API}/guided-onboarding-sessions"
DEFAULT_PAGE_SIZE = 25  # documented default
MAX_PAGE_SIZE = 100  # ASSUME: the maximum is undocumented
MAX_LISTINGS = 256  # paging snapshots kept; older continuation tokens become unknown (400)
DOCUMENTATION_LINK = "https://docs.realto.io/guides/connect/electric-vehicles"
SESSION_KEYS = ("companyName", "created", "expired", "id", "manufacturer", "onboardingRequest", "vin", "url")
REQUEST_KEYS = (
    "action", "created", "data", "id", "principalId", "requestType", "returnUrl", "status", "errors",
)  # fmt: skip

Status = Literal["Pending", "Succeeded", "Failed", "Canceled"]
ActionType = Literal["Redirect", "Consent"]


@dataclass(slots=True)
class _Session:
    id: str
    request_id: str
    created: datetime
    company_name: str | None
    manufacturer: str | None
    vin: str | None
    action_type: ActionType
    return_url: str
    expires_at: datetime | None
    status: Status = "Pending"
    expired: bool = False
    entity_id: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)


class SessionsMixin:
    """Guided onboarding sessions, mixed into RealtoSimulator (which owns the clock and tenant)."""

    clock: Clock
    tenant_id: str
    client_uuid: str
    client_id: str
    _sessions: dict[str, _Session]
    _listings: OrderedDict[str, tuple[str, ...]]
    _vins: int

    def add_session(
        self,
        *,
        session_id: str | None = None,
        manufacturer: str | None = "Tesla",
        vin: str | None = None,
        company_name: str | None = "Example Energy BV",
        action_type: ActionType = "Redirect",
        return_url: str = "https://partner.example/onboarding/done",
        created: datetime | None = None,
        expires_in: float | None = None,
    ) -> str:
        """A Pending session waiting for the owner (`Redirect` to the OEM, or `Consent` in its app);
        `expires_in` seconds flips `expired` on the injected clock. Returns the session id."""
        sid = str(uuid.UUID(session_id)) if session_id is not None else str(uuid.uuid4())
        if sid in self._sessions:
            raise ValueError(f"session {sid!r} exists")
        if action_type not in ("Redirect", "Consent"):
            raise ValueError(f"unknown action type {action_type!r}")
        if created is not None and created.utcoffset() is None:
            raise ValueError("created must be timezone-aware")
        if vin is None:
            self._vins += 1
            vin = f"5YJ3E1EA{self._vins:09d}"  # Tesla-style WMI + a counter: 17 characters like a real VIN
        now = self.clock.now()
        self._sessions[sid] = _Session(
            id=sid, request_id=str(uuid.uuid4()), created=created or now, company_name=company_name,
            manufacturer=manufacturer, vin=vin, action_type=action_type, return_url=return_url,
            expires_at=None if expires_in is None else now + timedelta(seconds=expires_in),
        )  # fmt: skip
        return sid

    def succeed(self, session_id: str, entity_id: str | None = None) -> str:
        """The owner finished: `Succeeded`, no action left, `data.entity.id` filled. Returns the entity id."""
        s = self._session(session_id)
        s.status, s.errors = "Succeeded", []
        s.entity_id = str(uuid.UUID(entity_id)) if entity_id is not None else str(uuid.uuid4())
        return s.entity_id

    def fail_session(self, session_id: str, code: str, message: str) -> None:
        """`Failed` with one more `errors[]` item (ASSUME: `Failed` is implied by `errors[]`, not seen)."""
        s = self._session(session_id)
        s.status = "Failed"
        s.errors.append({"code": code, "message": message})

    def cancel(self, session_id: str) -> None:
        self._session(session_id).status = "Canceled"

    def expire(self, session_id: str) -> None:
        self._session(session_id).expired = True

    def remove(self, session_id: str) -> None:
        """Delete a session: 404 from now on, and skipped by listings already being paged."""
        del self._sessions[self._session(session_id).id]

    def session(self, session_id: str) -> dict[str, Any]:
        """The body a GET would return now."""
        return self._render(self._session(session_id))

    def _session(self, session_id: str) -> _Session:
        try:
            session = self._sessions.get(str(uuid.UUID(session_id)))
        except ValueError:
            session = None
        if session is None:
            raise KeyError(f"unknown session {session_id!r}")
        return session

    def _ordered(self) -> list[_Session]:
        return sorted(self._sessions.values(), key=lambda s: (s.created, s.id))

    def _expired(self, s: _Session) -> bool:
        return s.expired or (s.expires_at is not None and self.clock.now() >= s.expires_at)

    def _render(self, s: _Session) -> dict[str, Any]:
        collective_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"realto-sim/collective/{s.id}"))
        action: dict[str, Any] | None = None
        if s.status == "Pending":
            oem = quote(s.manufacturer or "oem")
            redirect = f"https://oem-simulator.invalid/{oem}/authorize?state={s.request_id}"
            action = {
                "documentationLink": DOCUMENTATION_LINK if s.action_type == "Consent" else None,
                "redirectLink": redirect if s.action_type == "Redirect" else None,
                "type": s.action_type,
            }
        data = {
            "collective": {
                "id": collective_id, "name": s.company_name, "owner": None, "properties": None,
                "tenantId": self.tenant_id, "type": "Household",
            },
            "entity": {
                "collectiveId": collective_id, "id": s.entity_id,
                "information": {
                    "code": None, "ean": None, "email": None, "manufacturer": s.manufacturer, "model": None,
                    "reference": s.vin, "track": None, "type": "EV", "uuid": None, "vin": s.vin,
                },
                "owner": None, "properties": None,
                "reference": {"manufacturer": s.manufacturer, "type": "EV", "reference": s.vin},
                "systemProperties": None, "tenantId": self.tenant_id, "type": "EV",
            },
            "tenant": {
                "type": "Company", "administrator": self.client_uuid, "id": self.tenant_id,
                "name": "Simulated Tenant",
            },
            "user": None,  # guided onboarding has no platform user; the owner acts through `url`
            "client": {
                "id": self.client_uuid, "name": self.client_id, "tenantId": self.tenant_id,
                "isTenantAdmin": False,
            },
        }  # fmt: skip
        request = {
            "action": action, "created": iso_z(s.created), "data": data, "id": s.request_id,
            "principalId": self.client_uuid, "requestType": "Entity", "returnUrl": s.return_url,
            "status": s.status, "errors": [dict(e) for e in s.errors],
        }  # fmt: skip
        return {
            "companyName": s.company_name, "created": iso_z(s.created), "expired": self._expired(s),
            "id": s.id, "manufacturer": s.manufacturer, "onboardingRequest": request, "vin": s.vin,
            "url": f"https://onboarding.realto-simulator.invalid/guided/{s.id}",
        }  # fmt: skip

    def _new_listing(self) -> str:
        nonce = secrets.token_urlsafe(9)
        self._listings[nonce] = tuple(s.id for s in self._ordered())
        while len(self._listings) > MAX_LISTINGS:
            self._listings.popitem(last=False)
        return nonce

    def _decode_token(self, token: str) -> tuple[str, int, int] | None:
        """(nonce, offset, page) from a continuation token, or None when it is garbled or unknown."""
        try:
            raw = orjson.loads(unb64url(token))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(raw, dict):
            return None
        nonce, offset, page = raw.get("n"), raw.get("o"), raw.get("p")
        if not (isinstance(nonce, str) and isinstance(offset, int) and isinstance(page, int)):
            return None
        if nonce not in self._listings or offset < 0 or page < 2:
            return None
        return nonce, offset, page

    def _page_of(self, request: web.Request) -> int | None:
        token = request.query.get("continuationToken")
        if not token:
            return 1
        decoded = self._decode_token(token)
        return None if decoded is None else decoded[2]

    # ---------------------------------------------------------------- HTTP

    async def _list(self, request: web.Request) -> web.Response:
        raw_size = request.query.get("pageSize")
        try:
            size = DEFAULT_PAGE_SIZE if raw_size is None else int(raw_size)
        except ValueError:
            return problem(
                400,
                "One or more validation errors occurred.",
                errors={"pageSize": [f"The value '{raw_size}' is not valid."]},
            )
        size = min(max(size, 1), MAX_PAGE_SIZE)
        token = request.query.get("continuationToken")
        if token:
            decoded = self._decode_token(token)
            if decoded is None:
                # ASSUME the ConnectApiErrorResult fields: the `{code, message}` items Connect uses elsewhere.
                return json_response(
                    {
                        "title": "Bad Request",
                        "status": 400,
                        "errors": [
                            {
                                "code": "InvalidContinuationToken",
                                "message": "The continuation token is not valid.",
                            }
                        ],
                    },
                    status=400,
                )
            nonce, offset, page = decoded
        else:
            nonce, offset, page = self._new_listing(), 0, 1
        ids = self._listings[nonce]
        window = ids[offset : offset + size]
        data = [self._render(self._sessions[i]) for i in window if i in self._sessions]
        next_token: str | None = None
        next_url: str | None = None
        if offset + size < len(ids):
            next_token = b64url(orjson.dumps({"n": nonce, "o": offset + size, "p": page + 1}))
            next_url = str(request.url.with_query({"pageSize": str(size), "continuationToken": next_token}))
        return json_response(
            {
                "data": data,
                "links": {"next": next_url},
                "meta": {"continuationToken": next_token, "pageSize": size},
            }
        )

    async def _get(self, request: web.Request) -> web.Response:
        try:
            session = self._session(request.match_info["session_id"])
        except KeyError:
            return not_found()  # malformed ids too: .NET's `{id:guid}` route constraint does not match
        return json_response(self._render(session))
