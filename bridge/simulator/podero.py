"""A faithful fake of the Podero Partner API v2.0 (providers.md §1 and §4), for tests, demo and simulate.

Emits the seed-002 `WallboxDetailOutput` shape with stable key order; only `updated_at`-type fields
move between reads and every read re-signs the actions' `resolution_link.url`. Derived fields (`mode`,
`connection`, `action_needed`, `has_notification`) follow the ASSUME truth tables of §1.3. Tokens
expire on the injected clock. Error bodies are the Django Ninja / django-oauth-toolkit defaults (§1.5).
Scenario methods are plain synchronous calls; `/_sim/…` exposes the same to curl.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal
from urllib.parse import unquote_plus

import orjson
from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from bridge.clock import Clock
from bridge.simulator import (
    AdminAction,
    FaultKind,
    FaultPlan,
    add_admin_routes,
    iso_z,
    json_response,
    serve_fault,
)

API = "/api/partners/v2.0"
DEFAULT_ORG = "00000000-0000-4000-8000-000000000001"
ROUTES = ("token", "wallbox", "users", "user_wallboxes", "onboarding", "cue")
CUE_SECRET_LIFETIME = timedelta(hours=1)  # "expires 1 hour after issuance" (seed 002)
_TOKEN_ALPHABET = string.ascii_letters + string.digits

# Seed-002 property order; the body is always emitted in this order.
_SEED_002_ORDER = """
connection_status monitoring_status steering_status device_model owner price_zone id created_at
updated_at deleted_at lifecycle_state lifecycle_error pause_power_until is_pause_power_active
external_device_id is_authenticated is_smart_optimization_active optimization_score current_mode comment
current_state_last_updated_at last_monitoring_executed_at is_inverter_forced_mode_enabled
is_inverter_forced_mode_active inverter_forced_mode_since is_trading_enabled actual_steering_state
charge_target_min charge_target_max charge_power_max_w supports_current_modulation
supports_phase_switching phases min_amps max_amps capabilities_last_refreshed_at
hems_min_export_to_start_w hems_max_import_before_stopping_w firmware_version is_ocpp_connected
ocpp_connected_last_updated_at total_energy_delivered_wh is_charge_policy_enabled
charge_policy_last_updated_at minimum_charge_limit charge_deadline_at is_over_charge_allowed
charge_time_remaining charge_rate_w is_fully_charged is_plugged_in is_charging
charge_state_last_updated_at consumption_last_day_kwh consumption_last_week_kwh
consumption_last_month_kwh consumption_last_updated_at needs_gateway embeddable_url authorization_url
action_needed has_notification mode connection actions
"""
WALLBOX_KEYS = tuple(_SEED_002_ORDER.split())
# Stamped with "now" on every read (when not null): the noise a differ must ignore.
VOLATILE = frozenset(
    {
        "updated_at",
        "current_state_last_updated_at",
        "last_monitoring_executed_at",
        "ocpp_connected_last_updated_at",
        "charge_policy_last_updated_at",
        "charge_state_last_updated_at",
        "consumption_last_updated_at",
    }
)
# Computed at render time (or fixed at creation), so they can never disagree with their inputs.
NOT_SETTABLE = frozenset(
    {"owner", "id", "created_at", "action_needed", "has_notification", "mode", "connection", "actions"}
)
_FLOATS = frozenset({"optimization_score", "charge_rate_w"})  # `number` in the schema: pydantic emits 7200.0

_UUID = TypeAdapter(uuid.UUID)
_BOOL = TypeAdapter(bool)


class _CueStateInput(BaseModel):
    state: Literal["success", "fail"]
    payload: dict[str, Any] | None = None
    location: dict[str, Any] | None = None
    client_info: dict[str, Any] | None = None


class _Unprocessable(Exception):
    """A Django Ninja validation failure: 422 `{"detail": [...]}`."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__("validation failed")
        self.items = items


@dataclass(slots=True)
class _User:
    id: str
    data: dict[str, Any]


@dataclass(slots=True)
class _Action:
    cue_id: str
    code: str
    sent_at: datetime
    metadata: dict[str, Any]
    issued: dict[str, datetime] = field(default_factory=dict)  # secret → issued at


@dataclass(slots=True)
class _Wallbox:
    id: str
    user_id: str
    fields: dict[str, Any]
    actions: list[_Action] = field(default_factory=list)


def _new_id(given: str | None = None) -> str:
    return str(uuid.UUID(given)) if given is not None else str(uuid.uuid4())


def _jsonable(value: Any) -> Any:
    return iso_z(value) if isinstance(value, datetime) else value


def _not_found() -> web.Response:
    return json_response({"detail": "Not Found"}, status=404)


def _unauthorized() -> web.Response:
    return json_response({"detail": "Unauthorized"}, status=401)


class PoderoSimulator:
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
        self.org_id = _new_id(org_id)
        self.token_lifetime = token_lifetime
        self.base_url = ""  # set by whoever serves the app, for convenience only
        self.requests: list[tuple[str, str]] = []
        self.token_requests = 0
        self.faults = FaultPlan(ROUTES)
        self._tokens: dict[str, datetime] = {}
        self._users: dict[str, _User] = {}
        self._wallboxes: dict[str, _Wallbox] = {}
        self._sessions: dict[str, dict[str, Any]] = {}

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
        uid = _new_id(user_id)
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
        self._users[uid] = _User(uid, data)
        return uid

    def add_wallbox(self, user_id: str, *, wallbox_id: str | None = None, **fields: Any) -> str:
        """Add a connected, authenticated wallbox for `user_id`; `fields` override the defaults."""
        user = self._user(user_id)
        wid = _new_id(wallbox_id)
        if wid in self._wallboxes:
            raise ValueError(f"wallbox {wid!r} exists")
        now = self.clock.now()
        cloud = str(uuid.uuid5(uuid.NAMESPACE_URL, "podero-sim/cloud/easee"))
        defaults: dict[str, Any] = {
            "connection_status": "ok", "monitoring_status": "ok", "steering_status": "ok",
            "device_model": {
                "device_type": {"short_name": "wallbox", "long_name": "Wallbox"},
                "manufacturer": "Easee", "model": "Charge Lite",
                "cloud_service_instructions": None, "cloud_service_signup_link": None,
                "year": 2023, "cloud_service": cloud,
            },
            "price_zone": "AT", "id": wid, "created_at": now, "updated_at": now, "deleted_at": None,
            "lifecycle_state": "authenticated", "lifecycle_error": None, "pause_power_until": None,
            "is_pause_power_active": False, "external_device_id": "", "is_authenticated": True,
            "is_smart_optimization_active": True, "optimization_score": 0.82, "current_mode": None,
            "comment": None, "current_state_last_updated_at": now, "last_monitoring_executed_at": now,
            "is_inverter_forced_mode_enabled": False, "is_inverter_forced_mode_active": False,
            "inverter_forced_mode_since": "0001-01-01T00:00:00Z", "is_trading_enabled": False,
            "actual_steering_state": "unknown", "charge_target_min": 50, "charge_target_max": 80,
            "charge_power_max_w": 11000, "supports_current_modulation": True,
            "supports_phase_switching": False, "phases": 3, "min_amps": 6, "max_amps": 16,
            "capabilities_last_refreshed_at": now, "hems_min_export_to_start_w": 2000,
            "hems_max_import_before_stopping_w": 4000, "firmware_version": "4.12.1",
            "is_ocpp_connected": True, "ocpp_connected_last_updated_at": now,
            "total_energy_delivered_wh": 1843200, "is_charge_policy_enabled": False,
            "charge_policy_last_updated_at": None, "minimum_charge_limit": 80, "charge_deadline_at": None,
            "is_over_charge_allowed": False, "charge_time_remaining": None, "charge_rate_w": 0.0,
            "is_fully_charged": False, "is_plugged_in": False, "is_charging": False,
            "charge_state_last_updated_at": now,
            # Decimal fields: Ninja prints Decimal as a JSON string, so clients must accept both.
            "consumption_last_day_kwh": "4.210", "consumption_last_week_kwh": 29.87,
            "consumption_last_month_kwh": "128.500", "consumption_last_updated_at": now,
            "needs_gateway": False, "embeddable_url": None, "authorization_url": None,
        }  # fmt: skip
        box = _Wallbox(wid, user.id, defaults)
        self._wallboxes[wid] = box
        try:
            self.update_wallbox(wid, **fields)
        except (ValueError, KeyError):
            del self._wallboxes[wid]
            raise
        return wid

    def update_wallbox(self, wallbox_id: str, **fields: Any) -> None:
        """Change stored fields, e.g. `is_plugged_in=True, is_charging=True, charge_rate_w=7200`."""
        box = self._wallbox(wallbox_id)
        unknown = set(fields) - set(WALLBOX_KEYS)
        if unknown:
            raise ValueError(f"unknown wallbox field(s): {', '.join(sorted(unknown))}")
        derived = set(fields) & NOT_SETTABLE
        if derived:
            raise ValueError(f"derived or fixed field(s) cannot be set: {', '.join(sorted(derived))}")
        merged = {**box.fields, **fields}
        if "lifecycle_state" in fields and "lifecycle_error" not in fields:
            merged["lifecycle_error"] = None if merged["lifecycle_state"] != "error" else "error"
        if merged["lifecycle_error"] is not None and merged["lifecycle_state"] != "error":
            raise ValueError("lifecycle_error is only set when lifecycle_state == 'error'")
        if fields.get("is_ocpp_connected") and merged["ocpp_connected_last_updated_at"] is None:
            merged["ocpp_connected_last_updated_at"] = self.clock.now()
        for key in _FLOATS & fields.keys():
            merged[key] = None if merged[key] is None else float(merged[key])
        box.fields = merged

    def add_action(
        self, wallbox_id: str, code: str = "reauthenticate", *, message: str | None = None, **metadata: Any
    ) -> str:
        """Add a pending action (cue); returns the cue id. `reauthenticate` also unauthenticates the box."""
        box = self._wallbox(wallbox_id)
        if code == "information":
            metadata = {"message": message or "Your wallbox has a new message.", **metadata}
        cue = _Action(_new_id(), code, self.clock.now(), metadata)
        box.actions.append(cue)
        if code == "reauthenticate":
            box.fields["is_authenticated"] = False
        return cue.cue_id

    def resolve_action(self, wallbox_id: str, code: str) -> list[str]:
        """Remove every pending action with `code` (as a `success` outcome would); returns their cue ids."""
        box = self._wallbox(wallbox_id)
        gone = [a for a in box.actions if a.code == code]
        if not gone:
            raise KeyError(f"wallbox {wallbox_id!r} has no pending {code!r} action")
        for action in gone:
            self._remove_action(box, action)
        return [a.cue_id for a in gone]

    def soft_delete_wallbox(self, wallbox_id: str) -> None:
        self._wallbox(wallbox_id).fields["deleted_at"] = self.clock.now()

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
        sid = _new_id(session_id)
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
        """Finish a session: `object_id` is the device it created (a new wallbox when omitted)."""
        session = self._sessions.get(_new_id(session_id))
        if session is None:
            raise KeyError(f"unknown onboarding session {session_id!r}")
        session["object_id"] = _new_id(object_id) if object_id else self.add_wallbox(session["user"])
        return str(session["object_id"])

    def revoke_tokens(self) -> None:
        """Invalidate every issued token now (the next API call gets 401)."""
        self._tokens.clear()

    def fail(
        self,
        route_name: str,
        *,
        status: int = 500,
        times: int | None = 1,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        kind: FaultKind = "status",
        delay: float = 1.0,
        resource: str | None = None,
    ) -> None:
        """Fail the next `times` requests on a route (see ROUTES; None: until `faults.clear()`), or
        only those for one resource (a wallbox or onboarding session id); `delay` is for `kind="slow"`."""
        self.faults.add(
            route_name,
            status=status,
            times=times,
            body=body,
            headers=headers,
            kind=kind,
            delay=delay,
            resource=resource,
        )

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
            "onboarding_sessions": {sid: s["object_id"] for sid, s in self._sessions.items()},
        }

    def wallbox(self, wallbox_id: str) -> dict[str, Any]:
        """The body a GET would return now (a read: volatile fields move, URLs are re-signed)."""
        return self._render(self._wallbox(wallbox_id))

    def onboarding_session(self, session_id: str) -> dict[str, Any]:
        """The body a GET of the device onboarding session would return now."""
        session = self._sessions.get(_new_id(session_id))
        if session is None:
            raise KeyError(f"unknown onboarding session {session_id!r}")
        return dict(session)

    # ---------------------------------------------------------------- state helpers

    def _user(self, user_id: str) -> _User:
        user = self._users.get(_new_id(user_id))
        if user is None:
            raise KeyError(f"unknown user {user_id!r}")
        return user

    def _wallbox(self, wallbox_id: str) -> _Wallbox:
        box = self._wallboxes.get(_new_id(wallbox_id))
        if box is None:
            raise KeyError(f"unknown wallbox {wallbox_id!r}")
        return box

    def _remove_action(self, box: _Wallbox, action: _Action) -> None:
        box.actions.remove(action)
        if action.code == "reauthenticate" and not any(a.code == "reauthenticate" for a in box.actions):
            box.fields["is_authenticated"] = True

    def _find_cue(self, cue_id: str) -> tuple[_Wallbox, _Action] | None:
        for box in self._wallboxes.values():
            for action in box.actions:
                if action.cue_id == cue_id:
                    return box, action
        return None

    def _render(self, box: _Wallbox) -> dict[str, Any]:
        now = self.clock.now()
        f = box.fields
        for key in VOLATILE:
            if f[key] is not None:
                f[key] = now
        user = self._users[box.user_id].data
        auth, plugged, charging = f["is_authenticated"], f["is_plugged_in"], f["is_charging"]
        if auth is False:
            mode = "UNAVAILABLE"
        elif None in (auth, plugged, charging):
            mode = "UNKNOWN"
        else:
            mode = "CHARGING" if charging else "PLUGGED_IN" if plugged else "READY"
        if not auth or f["ocpp_connected_last_updated_at"] is None:
            connection = "never_connected"
        else:
            connection = "online" if f["is_ocpp_connected"] else "offline"
        computed: dict[str, Any] = {
            "owner": {
                "id": user["id"], "email": user["email"], "first_name": user["first_name"],
                "last_name": user["last_name"], "external_id": user["external_user_id"],
            },
            "action_needed": bool(box.actions),
            "has_notification": any(a.code == "information" for a in box.actions),
            "mode": mode,
            "connection": connection,
            "actions": [self._render_action(a, now) for a in box.actions],
        }  # fmt: skip
        return {k: computed[k] if k in computed else _jsonable(f[k]) for k in WALLBOX_KEYS}

    def _render_action(self, action: _Action, now: datetime) -> dict[str, Any]:
        # A fresh signed secret per read, like Podero's re-issued links; old ones stay valid for an hour.
        action.issued = {s: t for s, t in action.issued.items() if now - t < CUE_SECRET_LIFETIME}
        secret = secrets.token_urlsafe(24)
        action.issued[secret] = now
        link = f"{API}/cues/{action.cue_id}/resolve?secret={secret}"
        if action.code == "reauthenticate":
            return {
                "code": "reauthenticate",
                "resolution_link": {"url": link, "required_parameters": ["successUrl", "cancelUrl"]},
            }
        item: dict[str, Any] = {
            "code": action.code,
            "resolution_link": {"url": link, "required_parameters": []},
        }
        if action.code == "information":
            item["metadata"] = dict(action.metadata)
            item["sent_at"] = iso_z(action.sent_at)
        elif action.metadata:
            item["metadata"] = dict(action.metadata)
        return item

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
        app = web.Application(middlewares=[_ninja_errors])
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
        add_admin_routes(app, self._admin_routes())
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
                    return _unauthorized()
                try:
                    return await handler(request)
                except _Unprocessable as exc:
                    return json_response({"detail": exc.items}, status=422)

            resource = request.match_info.get("wallbox_id") or request.match_info.get("session_id")
            fault = self.faults.take(name, resource)
            return await (serve_fault(fault, normal, request) if fault is not None else normal())

        return wrapped

    async def _token(self, request: web.Request) -> web.Response:
        body = await _read_body(request)
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
        body = await _read_body(request)
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
        (org_id,) = _path_uuids(request, "org_id")
        include_deleted = _include_deleted(request)
        if org_id != self.org_id:
            return _not_found()
        users = [u.data for u in self._users.values() if include_deleted or u.data["deleted_at"] is None]
        return json_response([{k: _jsonable(v) for k, v in u.items()} for u in users])

    async def _list_wallboxes(self, request: web.Request) -> web.Response:
        org_id, user_id = _path_uuids(request, "org_id", "user_id")
        include_deleted = _include_deleted(request)
        if org_id != self.org_id or user_id not in self._users:
            return _not_found()
        boxes = [
            b
            for b in self._wallboxes.values()
            if b.user_id == user_id and (include_deleted or b.fields["deleted_at"] is None)
        ]
        return json_response([self._render(b) for b in boxes])

    async def _get_wallbox(self, request: web.Request) -> web.Response:
        org_id, user_id, wallbox_id = _path_uuids(request, "org_id", "user_id", "wallbox_id")
        include_deleted = _include_deleted(request)
        box = self._wallboxes.get(wallbox_id)
        if org_id != self.org_id or box is None or box.user_id != user_id:
            return _not_found()
        if box.fields["deleted_at"] is not None and not include_deleted:
            return _not_found()
        return json_response(self._render(box))

    async def _get_session(self, request: web.Request) -> web.Response:
        (session_id,) = _path_uuids(request, "session_id")
        session = self._sessions.get(session_id)
        return _not_found() if session is None else json_response(session)

    def _active_cue(self, request: web.Request) -> tuple[_Wallbox, _Action] | web.Response:
        (cue_id,) = _path_uuids(request, "cue_id")
        found = self._find_cue(cue_id)
        if found is None:
            return _not_found()
        issued = found[1].issued.get(request.query.get("secret", ""))
        if issued is None or self.clock.now() - issued >= CUE_SECRET_LIFETIME:
            return _unauthorized()
        return found

    async def _cue_state(self, request: web.Request) -> web.Response:
        found = self._active_cue(request)
        if isinstance(found, web.Response):
            return found
        try:
            outcome = _CueStateInput.model_validate_json(await request.read())
        except ValidationError as exc:
            raise _Unprocessable(_ninja_items(exc, ("body", "data"))) from exc
        box, action = found
        if outcome.state == "success":
            self._remove_action(box, action)
        return json_response({"action_id": action.cue_id})

    async def _cue_resolve(self, request: web.Request) -> web.Response:
        found = self._active_cue(request)
        if isinstance(found, web.Response):
            return found
        _, action = found
        return json_response({"redirect_url": f"https://podero-simulator.invalid/cues/{action.cue_id}/start"})


# -------------------------------------------------------------------- request parsing, Ninja style


async def _read_body(request: web.Request) -> dict[str, Any]:
    """JSON as documented; a form body too (lenient, like DOT's stock OAuthLibCore)."""
    raw = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        return dict((await request.post()).items())
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _ninja_items(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    items = []
    for error in exc.errors(include_url=False):
        item: dict[str, Any] = {"type": error["type"], "loc": [*prefix, *error["loc"]], "msg": error["msg"]}
        if "ctx" in error:
            item["ctx"] = {k: str(v) for k, v in error["ctx"].items()}
        items.append(item)
    return items


def _path_uuids(request: web.Request, *names: str) -> list[str]:
    """Validate uuid path parameters the way Ninja does (pydantic), collecting every error."""
    values, problems = [], []
    for name in names:
        try:
            values.append(str(_UUID.validate_python(request.match_info[name])))
        except ValidationError as exc:
            problems += _ninja_items(exc, ("path", name))
    problems += _query_problems(request)
    if problems:
        raise _Unprocessable(problems)
    return values


def _query_problems(request: web.Request) -> list[dict[str, Any]]:
    if "include_deleted" not in request.query:
        return []
    try:
        _BOOL.validate_python(request.query["include_deleted"])
    except ValidationError as exc:
        return _ninja_items(exc, ("query", "include_deleted"))
    return []


def _include_deleted(request: web.Request) -> bool:
    return bool(_BOOL.validate_python(request.query.get("include_deleted", "false")))


@web.middleware
async def _ninja_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return json_response({"detail": "Method not allowed"}, status=405)
