"""A faithful fake of the WattShift API v1.0 onboarding status and homes (providers.md §3 and §4), for
tests, demo and simulate.

Every route is POST + JSON and answers 201 (NestJS's POST default; the docs say 200, so clients must
accept any 2xx). Emits the seed-004 `OnboardingStatusResponseDto` with all seven keys, optionally with
the legacy `thermostatBrandName` spelling per home. Auth is the static `x-ws-api-key` header or a
session token from `/v1/onboarding/session-token/generate`, expiring on the injected clock. Error
bodies are the NestJS defaults (§3.3). Scenario methods are plain synchronous calls; `/_sim/…` exposes
the same to curl.
"""

from __future__ import annotations

import secrets
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import orjson
from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import (
    AdminAction,
    FaultPlan,
    FaultScript,
    add_admin_routes,
    iso_z,
    json_response,
    serve_fault,
)

ROUTES = ("status", "homes", "session_token")
# A fixed key in the documented `sk-` + 64 hex shape, so demo configs can name it.
DEFAULT_API_KEY: Final = "sk-383c5ccc9fe76c832497483b5b470c7e341cf402c035eec3ac41a79bd4c343f7"
STATUS_KEYS = ("id", "homeId", "status", "eligibilityStatus", "thermostatBrandCode", "zipcode", "step")
STATUS_VALUES = ("NOT_STARTED", "IN_PROGRESS", "COMPLETED", "ERROR")
HOME_KEYS = (
    "id", "name", "userId", "UtilityId", "ratePlanId", "unstructuredAddress", "timezone", "country", "city",
    "zipcode", "streetAddress", "meterId", "meterIdSource", "energyMarketBiddingEnabled",
    "carbonSignalIntensity", "enabled", "channelPartnerId", "createdAt", "updatedAt",
)  # fmt: skip
NOT_SETTABLE = frozenset({"id", "createdAt", "updatedAt"})


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Final = _Omit()
"""`set_status(home, step=OMIT)` drops the key from the body, to test the "always present" contract."""


@dataclass(slots=True)
class _Home:
    id: str
    fields: dict[str, Any]
    status: dict[str, Any]
    legacy_brand_field: bool


def _nest_error(status: int, message: str | list[str], error: str | None = None) -> web.Response:
    body: dict[str, Any] = {"statusCode": status, "message": message}
    if error is not None:
        body["error"] = error
    return json_response(body, status=status)


def _unauthorized() -> web.Response:
    return _nest_error(401, "Unauthorized")


class _BadRequest(Exception):
    """A NestJS ValidationPipe failure: 400 with a `message` array."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("validation failed")
        self.messages = messages


class WattShiftSimulator(FaultScript):
    """One WattShift API owner's homes and their onboarding, served as an aiohttp app by `app()`."""

    def __init__(
        self, *, clock: Clock, api_key: str = DEFAULT_API_KEY, session_token_lifetime: float = 3600.0
    ) -> None:
        self.clock = clock
        self.api_key = api_key
        self.session_token_lifetime = session_token_lifetime  # ASSUME: the lifetime is undocumented
        self.base_url = ""  # set by whoever serves the app, for convenience only
        self.requests: list[tuple[str, str]] = []
        self.asked: Counter[str] = Counter()  # status requests per homeId (faulted ones included)
        self.faults = FaultPlan(ROUTES)
        self._session_tokens: dict[str, datetime] = {}
        self._homes: dict[str, _Home] = {}

    # ---------------------------------------------------------------- scenario API (synchronous)

    def add_home(
        self,
        *,
        home_id: str | None = None,
        name: str | None = "Home",
        zipcode: str | None = "94107",
        legacy_brand_field: bool = False,
        **fields: Any,
    ) -> str:
        """A home whose onboarding has not started; `fields` override Home defaults. Returns its id.
        `legacy_brand_field` emits the older docs' `thermostatBrandName` instead of `thermostatBrandCode`."""
        hid = home_id if home_id is not None else f"ws_home_{uuid.uuid4().hex}"
        if hid in self._homes:
            raise ValueError(f"home {hid!r} exists")
        now = iso_z(self.clock.now())
        defaults: dict[str, Any] = {
            "id": hid, "name": name, "userId": None, "UtilityId": None, "ratePlanId": None,
            "unstructuredAddress": None, "timezone": "America/Los_Angeles", "country": "US", "city": None,
            "zipcode": zipcode, "streetAddress": None, "meterId": None, "meterIdSource": None,
            "energyMarketBiddingEnabled": False, "carbonSignalIntensity": "MEDIUM", "enabled": True,
            "channelPartnerId": None, "createdAt": now, "updatedAt": now,
        }  # fmt: skip
        status = dict.fromkeys(STATUS_KEYS)
        status.update(homeId=hid, status="NOT_STARTED")
        self._homes[hid] = _Home(hid, defaults, status, legacy_brand_field)
        try:
            self.update_home(hid, **fields)
        except ValueError:
            del self._homes[hid]
            raise
        return hid

    def update_home(self, home_id: str, **fields: Any) -> None:
        """Change Home fields (e.g. `enabled=False`); `updatedAt` moves when anything changes."""
        home = self._home(home_id)
        unknown = set(fields) - set(HOME_KEYS)
        if unknown:
            raise ValueError(f"unknown home field(s): {', '.join(sorted(unknown))}")
        fixed = set(fields) & NOT_SETTABLE
        if fixed:
            raise ValueError(f"fixed field(s) cannot be set: {', '.join(sorted(fixed))}")
        if fields:
            home.fields.update(fields, updatedAt=iso_z(self.clock.now()))

    def start(self, home_id: str, brand: str = "ecobee", *, zipcode: str | None = None) -> None:
        """The user began onboarding: IN_PROGRESS at step 1 with a flow id, brand and zipcode."""
        home = self._home(home_id)
        home.status.update(
            id=home.status["id"] or f"onboarding_flow_{uuid.uuid4().hex[:12]}",
            status="IN_PROGRESS",
            thermostatBrandCode=brand,
            zipcode=zipcode or home.fields["zipcode"],
            step=1,
        )

    def advance(self, home_id: str, steps: int = 1) -> int:
        """Complete `steps` more steps; returns the new step."""
        status = self._home(home_id).status
        if not isinstance(status["step"], int | float) or status["status"] != "IN_PROGRESS":
            raise ValueError(f"home {home_id!r} is not onboarding; call start() first")
        status["step"] += steps
        return int(status["step"])

    def complete(self, home_id: str, eligibility: str = "eligible") -> None:
        self._home(home_id).status.update(status="COMPLETED", eligibilityStatus=eligibility)

    def error(self, home_id: str) -> None:
        self._home(home_id).status["status"] = "ERROR"

    def set_status(self, home_id: str, **fields: Any) -> None:
        """Set any status keys to any value, schema-violating ones included; `OMIT` drops a key."""
        status = self._home(home_id).status
        unknown = set(fields) - set(STATUS_KEYS)
        if unknown:
            raise ValueError(f"unknown status field(s): {', '.join(sorted(unknown))}")
        status.update(fields)

    def remove_home(self, home_id: str) -> None:
        """Delete a home: gone from `/v1/homes/list`, 404 from the status route."""
        del self._homes[self._home(home_id).id]

    def revoke_tokens(self) -> None:
        """Invalidate every session token now (the API key stays valid)."""
        self._session_tokens.clear()

    def status(self, home_id: str) -> dict[str, Any]:
        """The body `/v1/onboarding/status/get` would return now."""
        return self._render_status(self._home(home_id))

    def home(self, home_id: str) -> dict[str, Any]:
        """The home as `/v1/homes/list` would show it now."""
        return dict(self._home(home_id).fields)

    def state(self) -> dict[str, Any]:
        """An overview for people: each home's onboarding status and step."""
        return {
            "homes": {
                h.id: {"status": h.status["status"], "step": h.status["step"], "enabled": h.fields["enabled"]}
                for h in self._homes.values()
            }
        }

    # ---------------------------------------------------------------- state helpers

    def _home(self, home_id: str) -> _Home:
        home = self._homes.get(home_id)
        if home is None:
            raise KeyError(f"unknown home {home_id!r}")
        return home

    def _render_status(self, home: _Home) -> dict[str, Any]:
        # The older docs' spelling takes the same position in the body.
        rename = {"thermostatBrandCode": "thermostatBrandName"} if home.legacy_brand_field else {}
        return {rename.get(k, k): home.status[k] for k in STATUS_KEYS if home.status[k] is not OMIT}

    def _authorized(self, request: web.Request, *, session_token_ok: bool) -> bool:
        key = request.headers.get("x-ws-api-key")
        if key is not None and secrets.compare_digest(key.encode(), self.api_key.encode()):
            return True
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if not session_token_ok or scheme.lower() != "bearer":
            return False
        expires = self._session_tokens.get(token.strip())
        return expires is not None and self.clock.now() < expires

    # ---------------------------------------------------------------- HTTP

    def app(self) -> web.Application:
        app = web.Application(middlewares=[_nest_not_found])
        route = self._route
        app.router.add_post("/v1/onboarding/status/get", route("status", self._get_status))
        app.router.add_post("/v1/homes/list", route("homes", self._list_homes))
        app.router.add_post(
            "/v1/onboarding/session-token/generate",
            route("session_token", self._session_token, session_token_ok=False),
        )
        add_admin_routes(app, self._admin_routes())
        return app

    def _admin_routes(self) -> list[tuple[str, str, AdminAction]]:
        """`/_sim/…`: the scenario API over HTTP, e.g. `curl -X POST …/_sim/homes/ID/start`."""
        one = "/_sim/homes/{home_id}"

        def fault(m: dict[str, str], b: dict[str, Any]) -> None:
            if isinstance(b.get("body"), str):
                b["body"] = b["body"].encode()
            self.fail(m["route"], **b)

        def update(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            self.update_home(m["home_id"], **b)
            return self.home(m["home_id"])

        def then_status(change: Callable[..., Any]) -> AdminAction:
            def act(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
                change(m["home_id"], **b)
                return self.status(m["home_id"])

            return act

        return [
            ("GET", "/_sim/state", lambda m, b: self.state()),
            ("POST", "/_sim/homes", lambda m, b: {"id": self.add_home(**b)}),
            ("GET", one, lambda m, b: self.status(m["home_id"])),
            ("POST", one, update),
            ("DELETE", one, lambda m, b: self.remove_home(m["home_id"])),
            ("POST", one + "/start", then_status(self.start)),
            ("POST", one + "/advance", then_status(self.advance)),
            ("POST", one + "/complete", then_status(self.complete)),
            ("POST", one + "/error", then_status(self.error)),
            ("POST", one + "/status", then_status(self.set_status)),
            ("POST", "/_sim/faults/{route}", fault),
            ("POST", "/_sim/revoke-tokens", lambda m, b: self.revoke_tokens()),
        ]

    def _route(
        self,
        name: str,
        handler: Callable[[web.Request, Any], Awaitable[web.Response]],
        *,
        session_token_ok: bool = True,
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path))

            async def normal() -> web.Response:
                # Express parses the body before Nest's guards run; the guard runs before validation.
                raw = await request.read()
                try:
                    body = orjson.loads(raw) if raw.strip() else {}
                except orjson.JSONDecodeError:
                    return _nest_error(400, "Unexpected token in JSON body", "Bad Request")
                if not self._authorized(request, session_token_ok=session_token_ok):
                    return _unauthorized()
                try:
                    return await handler(request, body if isinstance(body, dict) else {})
                except _BadRequest as exc:
                    return _nest_error(400, exc.messages, "Bad Request")

            home = _home_asked(await request.read()) if name == "status" else None
            if home is not None:
                self.asked[home] += 1
            fault = self.faults.take(name, home)
            return await (serve_fault(fault, normal, request) if fault is not None else normal())

        return wrapped

    async def _get_status(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        home_id = body.get("homeId")
        if not isinstance(home_id, str):
            raise _BadRequest(["homeId must be a string"])
        home = self._homes.get(home_id)
        if home is None:
            # ASSUME: WattShift does not document what an unknown homeId returns.
            return _nest_error(404, "Home not found", "Not Found")
        return json_response(self._render_status(home), status=201)

    async def _list_homes(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        return json_response([dict(h.fields) for h in self._homes.values()], status=201)

    async def _session_token(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        if "userId" in body and not isinstance(body["userId"], str):
            raise _BadRequest(["userId must be a string"])
        token = secrets.token_urlsafe(32)
        self._session_tokens[token] = self.clock.now() + timedelta(seconds=self.session_token_lifetime)
        return json_response({"sessionToken": token}, status=201)


def _home_asked(raw: bytes) -> str | None:
    """The `homeId` a request body asks about, for faults scripted for one home."""
    try:
        body = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError:
        return None
    home = body.get("homeId") if isinstance(body, dict) else None
    return home if isinstance(home, str) else None


@web.middleware
async def _nest_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    # Express has no 405: any unmatched method + path is Nest's `Cannot GET /path` 404.
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return _nest_error(404, f"Cannot {request.method} {request.path}", "Not Found")
