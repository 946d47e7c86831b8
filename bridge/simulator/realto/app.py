"""A faithful fake of the re.alto platform API (providers.md §2, providers-wave2.md §2.1), for tests,
demo and simulate: guided onboarding sessions (`sessions.py`) and entity commands (`commands.py`), behind
JWT-looking bearer tokens whose `exp` is read from the injected clock. Scenario methods are plain
synchronous calls; `/_sim/…` exposes the same to curl.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

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
from bridge.simulator.realto.commands import COMMAND_ROUTES, CommandsMixin
from bridge.simulator.realto.common import API, b64url, problem, unauthorized
from bridge.simulator.realto.sessions import SESSIONS, SessionsMixin

ROUTES = ("auth", "list", "session", *COMMAND_ROUTES)


class RealtoSimulator(SessionsMixin, CommandsMixin):
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
        self._sessions = {}
        self._commands = {}
        self._listings: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        self._vins = 0

    # ---------------------------------------------------------------- scenario API (synchronous)

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

    def state(self) -> dict[str, Any]:
        """An overview for people: each session's status and whether it expired, and each command's."""
        return {
            "tenant_id": self.tenant_id,
            "sessions": {
                s.id: {"status": s.status, "expired": self._expired(s), "entity_id": s.entity_id}
                for s in self._ordered()
            },
            "commands": {
                c.id: {"status": c.status, "type": c.type, "entity_id": c.entity_id}
                for c in self._commands.values()
            },
        }

    # ---------------------------------------------------------------- state helpers

    def _issue_token(self) -> dict[str, Any]:
        now = self.clock.now()
        expires = now + timedelta(seconds=self.token_lifetime)
        header = {"alg": "HS256", "typ": "JWT"}
        claims = {
            "iss": "https://platform.realto.io", "sub": self.client_uuid, "aud": "connect-api",
            "iat": int(now.timestamp()), "nbf": int(now.timestamp()), "exp": int(expires.timestamp()),
            "jti": str(uuid.uuid4()),
        }  # fmt: skip
        signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
        signature = hmac.new(self._signing_key, signing_input.encode(), hashlib.sha256).digest()
        token = f"{signing_input}.{b64url(signature)}"
        self._tokens[token] = expires
        return {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}

    def _auth_failure(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return unauthorized()
        expires = self._tokens.get(token.strip())
        if expires is None:
            return unauthorized('Bearer error="invalid_token"')
        if self.clock.now() >= expires:
            return unauthorized(
                f'Bearer error="invalid_token", error_description="The token expired at {iso_z(expires)}"'
            )
        return None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"{API}/authentication", self._route("auth", self._authenticate, bearer=False))
        app.router.add_get(SESSIONS, self._route("list", self._list))
        app.router.add_get(f"{SESSIONS}/{{session_id}}", self._route("session", self._get))
        self._add_command_routes(app, self._route)
        add_admin_routes(app, self._admin_routes() + self._command_admin_routes())
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
            return problem(
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
        return json_response(self._issue_token()) if ok else unauthorized()
