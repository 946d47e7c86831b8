"""A faithful fake of the re.alto platform API's guided onboarding (providers.md §2 and §4), for tests,
demo and simulate.

Emits the seed-003 `GuidedOnboardingSession` shape with stable key order, pages the list with opaque
continuation tokens over a snapshot taken at the first page (so paging never skips or repeats a session),
and issues JWT-looking bearer tokens whose `exp` is read from the injected clock. Error bodies are
ASP.NET ProblemDetails-style (ASSUME: Realto documents none beyond a 400 `ConnectApiErrorResult`).
Scenario methods are plain synchronous calls; `/_sim/…` exposes the same to curl.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote

import orjson
from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import (
    AdminAction,
    Fault,
    FaultKind,
    FaultPlan,
    add_admin_routes,
    iso_z,
    json_response,
    serve_fault,
)

API = "/api/v1"
SESSIONS = f"{API}/guided-onboarding-sessions"
ROUTES = ("auth", "list", "session")
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


def _problem(status: int, title: str, **extra: Any) -> web.Response:
    # ASP.NET Core ProblemDetails (RFC 9457), the stock error shape of a .NET API (ASSUME for Realto).
    body = {"type": f"https://tools.ietf.org/html/rfc9110#section-15.5.{status - 399}", "title": title}
    return json_response({**body, "status": status, **extra}, status=status)


def _unauthorized(challenge: str = "Bearer") -> web.Response:
    # Brief's ASSUME body; the challenge header is what .NET's JwtBearer handler always sends.
    return json_response(
        {"title": "Unauthorized", "status": 401}, status=401, headers={"WWW-Authenticate": challenge}
    )


def _not_found() -> web.Response:
    return _problem(404, "Not Found")


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RealtoSimulator:
    """One re.alto tenant's guided onboarding sessions in memory, served as an aiohttp app by `app()`."""

    def __init__(
        self,
        *,
        clock: Clock,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",  # noqa: S107 -- the simulator's documented demo credentials
        token_lifetime: int = 3599,
    ) -> None:
        self.clock = clock
        self.client_id, self.client_secret = client_id, client_secret
        self.token_lifetime = token_lifetime
        self.base_url = ""  # set by whoever serves the app, for convenience only
        self.requests: list[tuple[str, str]] = []
        self.token_requests = 0
        self.faults = FaultPlan(ROUTES)
        self.tenant_id = str(uuid.uuid5(uuid.NAMESPACE_URL, "realto-sim/tenant"))
        self.client_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"realto-sim/client/{client_id}"))
        self._page_faults: dict[int, FaultPlan] = {}
        self._signing_key = secrets.token_bytes(32)
        self._tokens: dict[str, datetime] = {}
        self._sessions: dict[str, _Session] = {}
        self._listings: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._vins = 0

    # ---------------------------------------------------------------- scenario API (synchronous)

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

    def revoke_tokens(self) -> None:
        """Invalidate every issued token now (the next API call gets 401)."""
        self._tokens.clear()

    def fail(
        self,
        route_name: str,
        *,
        status: int = 500,
        times: int = 1,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        kind: FaultKind = "status",
        delay: float = 1.0,
        on_page: int | None = None,
    ) -> None:
        """Fail the next `times` requests on a route (see ROUTES); `delay` is for `kind="slow"`.
        `on_page=N` (route "list" only) fails just requests for the Nth page of a listing (1 = no token)."""
        plan = self.faults
        if on_page is not None:
            if route_name != "list":
                raise ValueError("on_page applies to the 'list' route only")
            if on_page < 1:
                raise ValueError("on_page counts from 1")
            plan = self._page_faults.setdefault(on_page, FaultPlan(("list",)))
        plan.add(route_name, status=status, times=times, body=body, headers=headers, kind=kind, delay=delay)

    def session(self, session_id: str) -> dict[str, Any]:
        """The body a GET would return now."""
        return self._render(self._session(session_id))

    def state(self) -> dict[str, Any]:
        """An overview for people: each session's status and whether it expired."""
        return {
            "tenant_id": self.tenant_id,
            "sessions": {
                s.id: {"status": s.status, "expired": self._expired(s), "entity_id": s.entity_id}
                for s in self._ordered()
            },
        }

    # ---------------------------------------------------------------- state helpers

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

    def _issue_token(self) -> dict[str, Any]:
        now = self.clock.now()
        expires = now + timedelta(seconds=self.token_lifetime)
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "iss": "https://platform.realto.io", "sub": self.client_uuid, "aud": "connect-api",
            "iat": int(now.timestamp()), "nbf": int(now.timestamp()), "exp": int(expires.timestamp()),
            "jti": str(uuid.uuid4()),
        }  # fmt: skip
        signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}"
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{_b64url(signature)}"
        self._tokens[token] = expires
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _auth_failure(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _unauthorized()
        expires = self._tokens.get(token.strip())
        if expires is None:
            return _unauthorized('Bearer error="invalid_token"')
        if self.clock.now() >= expires:
            return _unauthorized(
                f'Bearer error="invalid_token", error_description="The token expired at {iso_z(expires)}"'
            )
        return None

    def _new_listing(self) -> str:
        nonce = secrets.token_urlsafe(9)
        self._listings[nonce] = tuple(s.id for s in self._ordered())
        while len(self._listings) > MAX_LISTINGS:
            self._listings.popitem(last=False)
        return nonce

    def _decode_token(self, token: str) -> tuple[str, int, int] | None:
        """(nonce, offset, page) from a continuation token, or None when it is garbled or unknown."""
        try:
            raw = orjson.loads(_unb64url(token))
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

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"{API}/authentication", self._route("auth", self._authenticate, bearer=False))
        app.router.add_get(SESSIONS, self._route("list", self._list))
        app.router.add_get(f"{SESSIONS}/{{session_id}}", self._route("session", self._get))
        add_admin_routes(app, self._admin_routes())
        return app

    def _admin_routes(self) -> list[tuple[str, str, AdminAction]]:
        """`/_sim/…`: the scenario API over HTTP, e.g. `curl -X POST …/_sim/sessions/ID/succeed`."""
        one = "/_sim/sessions/{session_id}"

        def fault(m: dict[str, str], b: dict[str, Any]) -> None:
            if isinstance(b.get("body"), str):
                b["body"] = b["body"].encode()
            self.fail(m["route"], **b)

        def add(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            if isinstance(b.get("created"), str):
                b["created"] = datetime.fromisoformat(b["created"])
            return self.session(self.add_session(**b))

        def succeed(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            return {"entity_id": self.succeed(m["session_id"], b.get("entity_id"))}

        return [
            ("GET", "/_sim/state", lambda m, b: self.state()),
            ("POST", "/_sim/sessions", add),
            ("GET", one, lambda m, b: self.session(m["session_id"])),
            ("DELETE", one, lambda m, b: self.remove(m["session_id"])),
            ("POST", one + "/succeed", succeed),
            ("POST", one + "/fail", lambda m, b: self.fail_session(m["session_id"], b["code"], b["message"])),
            ("POST", one + "/cancel", lambda m, b: self.cancel(m["session_id"])),
            ("POST", one + "/expire", lambda m, b: self.expire(m["session_id"])),
            ("POST", "/_sim/faults/{route}", fault),
            ("POST", "/_sim/revoke-tokens", lambda m, b: self.revoke_tokens()),
        ]

    def _route(
        self, name: str, handler: Callable[[web.Request], Awaitable[web.Response]], *, bearer: bool = True
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path))
            if name == "auth":
                self.token_requests += 1

            async def normal() -> web.Response:
                failure = self._auth_failure(request) if bearer else None
                return failure if failure is not None else await handler(request)

            fault = self._take_fault(name, request)
            return await (serve_fault(fault, normal, request) if fault is not None else normal())

        return wrapped

    def _take_fault(self, name: str, request: web.Request) -> Fault | None:
        if name == "list":
            page = self._page_of(request)
            plan = self._page_faults.get(page) if page is not None else None
            fault = plan.take("list") if plan is not None else None
            if fault is not None:
                return fault
        return self.faults.take(name)

    async def _authenticate(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _problem(
                400, "One or more validation errors occurred.", errors={"": ["Invalid JSON body."]}
            )
        if not isinstance(body, dict):
            body = {}
        client_id, client_secret = body.get("clientId"), body.get("clientSecret")
        ok = (
            isinstance(client_id, str)
            and isinstance(client_secret, str)
            and secrets.compare_digest(client_id.encode(), self.client_id.encode())
            and secrets.compare_digest(client_secret.encode(), self.client_secret.encode())
        )
        return json_response(self._issue_token()) if ok else _unauthorized()

    async def _list(self, request: web.Request) -> web.Response:
        raw_size = request.query.get("pageSize")
        try:
            size = DEFAULT_PAGE_SIZE if raw_size is None else int(raw_size)
        except ValueError:
            return _problem(
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
            next_token = _b64url(orjson.dumps({"n": nonce, "o": offset + size, "p": page + 1}))
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
            return _not_found()  # malformed ids too: .NET's `{id:guid}` route constraint does not match
        return json_response(self._render(session))
