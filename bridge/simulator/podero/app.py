"""A faithful fake of the Podero Partner API v2.0 (providers.md §1 and §4, providers-wave2.md §1), for
tests, demo and simulate: one organisation in memory, its users, their devices of the four families
(wallboxes in `wallboxes.py`; heat pumps, electric vehicles and inverters in `devices.py`), device
onboarding sessions and tokens (expiring on the injected clock). Error bodies are the Django Ninja /
django-oauth-toolkit defaults (§1.5). Scenario methods are plain synchronous calls; `/_sim/…` exposes the
same to curl.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import (
    AdminAction,
    FaultPlan,
    FaultScript,
    add_admin_routes,
    json_response,
    serve_fault,
)
from bridge.simulator.podero.common import (
    API,
    DEFAULT_ORG,
    Unprocessable,
    User,
    include_deleted,
    jsonable,
    new_id,
    ninja_errors,
    not_found,
    path_uuids,
    read_body,
    unauthorized,
)
from bridge.simulator.podero.devices import DEVICE_ROUTES, DeviceMixin
from bridge.simulator.podero.wallboxes import WallboxMixin

ROUTES = ("token", "wallbox", "users", "user_wallboxes", "onboarding", "cue", *DEVICE_ROUTES)
_TOKEN_ALPHABET = string.ascii_letters + string.digits


class PoderoSimulator(FaultScript, WallboxMixin, DeviceMixin):
    """One Podero organisation in memory, served as an aiohttp app by `app()`."""

    def __init__(
        self,
        *,
        clock: Clock,
        client_id: str = "sim-client",
        client_secret: str = "sim-secret",  # noqa: S107 -- the simulator's documented demo credentials
        org_id: str = DEFAULT_ORG,
        token_lifetime: int = 36000,
        username: str = "sim-user",
        password: str = "sim-password",  # noqa: S107 -- the simulator's documented demo credentials
    ) -> None:
        self.clock = clock
        self.client_id, self.client_secret = client_id, client_secret
        self.username, self.password = username, password
        self.org_id = new_id(org_id)
        self.token_lifetime = token_lifetime
        self.base_url = ""  # set by whoever serves the app, for convenience only
        self.requests: list[tuple[str, str]] = []
        self.token_requests = 0
        self.faults = FaultPlan(ROUTES)
        self._tokens: dict[str, datetime] = {}
        self._users: dict[str, User] = {}
        self._wallboxes = {}
        self._sessions: dict[str, dict[str, Any]] = {}
        self._devices = {}

    # ---------------------------------------------------------------- scenario API (synchronous)

    def add_user(
        self,
        *,
        user_id: str | None = None,
        email: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        external_user_id: str | None = None,
        role: str = "user",
        **extra: Any,
    ) -> str:
        """Add a user to the organisation; returns its id. Emails are unique per org (as in Podero)."""
        uid = new_id(user_id)
        if uid in self._users:
            raise ValueError(f"user {uid!r} exists")
        if email is not None and any(u.data["email"] == email for u in self._users.values()):
            raise ValueError(f"email {email!r} is taken in this organisation")
        now = self.clock.now()
        data: dict[str, Any] = {
            "id": uid, "email": email, "first_name": first_name, "last_name": last_name,
            "external_user_id": external_user_id, "role": role, "street_and_number": None,
            "zip_code": None, "town": None, "country_iso2": None, "latitude": None, "longitude": None,
        }  # fmt: skip
        data.update(extra)
        data.update({"created_at": now, "updated_at": now, "deleted_at": None})
        self._users[uid] = User(uid, data)
        return uid

    def add_onboarding_session(
        self,
        user_id: str,
        *,
        session_id: str | None = None,
        success_url: str = "https://partner.example/onboarding/success",
        cancel_url: str = "https://partner.example/onboarding/cancel",
        language: str = "en",
        price_zone_default: str | None = None,
        is_smart_optimization_active_default: bool | None = None,
        skip_to: str | None = "wb",
        external_metadata: dict[str, Any] | None = None,
    ) -> str:
        """A DeviceOnboardingSessionOutput (seed 000), "valid until the end of the next day"."""
        user = self._user(user_id)
        sid = new_id(session_id)
        self._sessions[sid] = {
            "authentication_url": f"https://podero-simulator.invalid/device-onboarding/{sid}?lang={language}",
            "id": sid, "user": user.id, "price_zone_default": price_zone_default,
            "is_smart_optimization_active_default": is_smart_optimization_active_default,
            "skip_to": skip_to, "success_url": success_url, "cancel_url": cancel_url,
            "expiration_date": (self.clock.now().date() + timedelta(days=1)).isoformat(),
            "object_id": None, "external_metadata": external_metadata, "language": language,
        }  # fmt: skip
        return sid

    def finish_onboarding(self, session_id: str, object_id: str | None = None) -> str:
        """Finish a session: `object_id` is the device it created (when omitted, a new device of the
        family `skip_to` names: a wallbox for `wb` or none)."""
        session = self._sessions.get(new_id(session_id))
        if session is None:
            raise KeyError(f"unknown onboarding session {session_id!r}")
        if object_id:
            session["object_id"] = new_id(object_id)
        elif session["skip_to"] in (None, "wb"):
            session["object_id"] = self.add_wallbox(session["user"])
        else:
            group = {"hp": "heat_pumps", "ev": "electric_vehicles", "iv": "inverters"}[session["skip_to"]]
            session["object_id"] = self.add_device(group, session["user"])
        return str(session["object_id"])

    def revoke_tokens(self) -> None:
        """Invalidate every issued token now (the next API call gets 401)."""
        self._tokens.clear()

    def state(self) -> dict[str, Any]:
        """An overview for people: the org, its users, their wallboxes and pending actions."""
        return {
            "org_id": self.org_id,
            "users": {
                uid: {
                    "email": u.data["email"],
                    "wallboxes": {
                        b.id: {
                            "deleted": b.fields["deleted_at"] is not None,
                            "actions": {a.cue_id: a.code for a in b.actions},
                        }
                        for b in self._wallboxes.values()
                        if b.user_id == uid
                    },
                }
                for uid, u in self._users.items()
            },
            "devices": {
                d.id: {
                    "family": d.family.group,
                    "user": d.user_id,
                    "deleted": d.fields["deleted_at"] is not None,
                }
                for d in self._devices.values()
            },
            "onboarding_sessions": {sid: s["object_id"] for sid, s in self._sessions.items()},
        }

    def onboarding_session(self, session_id: str) -> dict[str, Any]:
        """The body a GET of the device onboarding session would return now."""
        session = self._sessions.get(new_id(session_id))
        if session is None:
            raise KeyError(f"unknown onboarding session {session_id!r}")
        return dict(session)

    # ---------------------------------------------------------------- state helpers

    def _user(self, user_id: str) -> User:
        user = self._users.get(new_id(user_id))
        if user is None:
            raise KeyError(f"unknown user {user_id!r}")
        return user

    def _issue_token(self) -> dict[str, Any]:
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(30))
        self._tokens[token] = self.clock.now() + timedelta(seconds=self.token_lifetime)
        return {
            "access_token": token,
            "expires_in": self.token_lifetime,
            "token_type": "Bearer",
            "scope": "read write",
        }

    def _bearer_ok(self, request: web.Request) -> bool:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expires = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        return expires is not None and self.clock.now() < expires

    # ---------------------------------------------------------------- HTTP

    def app(self) -> web.Application:
        app = web.Application(middlewares=[ninja_errors])
        route = self._route
        app.router.add_post("/oauth2/token/", route("token", self._token, bearer=False))
        app.router.add_post(f"{API}/auth/token", route("token", self._password_token, bearer=False))
        org = f"{API}/org/{{org_id}}/users"
        app.router.add_get(org, route("users", self._list_users))
        app.router.add_get(f"{org}/{{user_id}}/wallboxes", route("user_wallboxes", self._list_wallboxes))
        app.router.add_get(f"{org}/{{user_id}}/wallboxes/{{wallbox_id}}", route("wallbox", self._get_wallbox))
        app.router.add_get(f"{API}/device-onboarding/{{session_id}}", route("onboarding", self._get_session))
        app.router.add_post(f"{API}/cues/{{cue_id}}/state", route("cue", self._cue_state, bearer=False))
        app.router.add_post(f"{API}/cues/{{cue_id}}/resolve", route("cue", self._cue_resolve, bearer=False))
        self._add_device_routes(app, route)
        add_admin_routes(app, self._admin_routes() + self._device_admin_routes())
        return app

    def _admin_routes(self) -> list[tuple[str, str, AdminAction]]:
        """`/_sim/…`: the scenario API over HTTP, e.g. `curl -X POST …/_sim/wallboxes/ID -d '{…}'`."""
        wb = "/_sim/wallboxes/{wallbox_id}"

        def update(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            self.update_wallbox(m["wallbox_id"], **b)
            return self.wallbox(m["wallbox_id"])

        def fault(m: dict[str, str], b: dict[str, Any]) -> None:
            if isinstance(b.get("body"), str):
                b["body"] = b["body"].encode()
            self.fail(m["route"], **b)

        return [
            ("GET", "/_sim/state", lambda m, b: self.state()),
            ("POST", "/_sim/users", lambda m, b: {"id": self.add_user(**b)}),
            (
                "POST",
                "/_sim/users/{user_id}/wallboxes",
                lambda m, b: {"id": self.add_wallbox(m["user_id"], **b)},
            ),
            ("GET", wb, lambda m, b: self.wallbox(m["wallbox_id"])),
            ("POST", wb, update),
            ("DELETE", wb, lambda m, b: self.soft_delete_wallbox(m["wallbox_id"])),
            ("POST", wb + "/actions", lambda m, b: {"cue_id": self.add_action(m["wallbox_id"], **b)}),
            ("DELETE", wb + "/actions/{code}", lambda m, b: {"resolved": self.resolve_action(**m)}),
            ("POST", "/_sim/onboarding", lambda m, b: {"id": self.add_onboarding_session(**b)}),
            (
                "POST",
                "/_sim/onboarding/{session_id}/finish",
                lambda m, b: {"object_id": self.finish_onboarding(m["session_id"], b.get("object_id"))},
            ),
            ("POST", "/_sim/faults/{route}", fault),
            ("POST", "/_sim/revoke-tokens", lambda m, b: self.revoke_tokens()),
        ]

    def _route(
        self, name: str, handler: Callable[[web.Request], Awaitable[web.Response]], *, bearer: bool = True
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.requests.append((request.method, request.path))
            if name == "token":
                self.token_requests += 1

            async def normal() -> web.Response:
                # Ninja runs auth before validating parameters, so 401 wins over 422.
                if bearer and not self._bearer_ok(request):
                    return unauthorized()
                try:
                    return await handler(request)
                except Unprocessable as exc:
                    return json_response({"detail": exc.items}, status=422)

            info = request.match_info
            resource = next(
                (v for k, v in info.items() if k.endswith("_id") and k not in ("org_id", "user_id")), None
            )
            fault = self.faults.take(name, resource)
            return await (serve_fault(fault, normal, request) if fault is not None else normal())

        return wrapped

    async def _token(self, request: web.Request) -> web.Response:
        body = await read_body(request)
        if body.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, status=400)
        client_id, client_secret = body.get("client_id"), body.get("client_secret")
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            try:
                pair = base64.b64decode(encoded.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                pair = ""
            user, _, pw = pair.partition(":")
            client_id, client_secret = unquote_plus(user), unquote_plus(pw)
        ok = secrets.compare_digest(str(client_id), self.client_id) and secrets.compare_digest(
            str(client_secret), self.client_secret
        )
        if not ok:
            return json_response({"error": "invalid_client"}, status=401)
        return json_response(self._issue_token())

    async def _password_token(self, request: web.Request) -> web.Response:
        """The seeds' OpenAPI puts both flows here: client credentials as on `/oauth2/token/`, and the
        password grant."""
        body = await read_body(request)
        if body.get("grant_type") == "client_credentials":
            return await self._token(request)
        if body.get("grant_type") not in ("password", "refresh_token"):
            return json_response({"error": "unsupported_grant_type"}, status=400)
        ok = (
            body.get("grant_type") == "password"
            and secrets.compare_digest(str(body.get("username")), self.username)
            and secrets.compare_digest(str(body.get("password")), self.password)
        )
        if not ok:  # no refresh tokens are ever issued, so a refresh grant is always invalid
            return json_response(
                {"error": "invalid_grant", "error_description": "Invalid credentials given."}, status=400
            )
        return json_response(self._issue_token())

    async def _list_users(self, request: web.Request) -> web.Response:
        (org_id,) = path_uuids(request, "org_id")
        deleted = include_deleted(request)
        if org_id != self.org_id:
            return not_found()
        users = [u.data for u in self._users.values() if deleted or u.data["deleted_at"] is None]
        return json_response([{k: jsonable(v) for k, v in u.items()} for u in users])

    async def _get_session(self, request: web.Request) -> web.Response:
        (session_id,) = path_uuids(request, "session_id")
        session = self._sessions.get(session_id)
        return not_found() if session is None else json_response(session)
