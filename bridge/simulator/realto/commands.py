"""The Realto simulator's Commands API (providers-wave2.md §2.1): commands sent to an entity (StartCharging,
StopCharging, LimitFeedIn, …), read by id or listed by trigger-time window, page by page.

Statuses are the documented six. The lifecycle is INFERRED from their names (the docs do not describe it):
Pending → Triggered → Sent → Succeeded | Failed, and Canceled from Pending. A failed command carries
`error: {title, description}`. The cancel path is INFERRED too (PATCH …/commands/{id}/cancel, by analogy
with the collective-onboarding cancel).
"""

from __future__ import annotations

import binascii
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, get_args

import orjson
from aiohttp import web

from bridge.clock import Clock
from bridge.simulator import AdminAction, iso_z, json_response
from bridge.simulator.realto.common import API, b64url, not_found, problem, unb64url

CommandStatus = Literal["Pending", "Triggered", "Sent", "Succeeded", "Failed", "Canceled"]
CommandType = Literal["Disconnect", "LimitFeedIn", "StartCharging", "StopCharging", "Reset", "StopFeedIn"]
STATUSES: tuple[str, ...] = get_args(CommandStatus)
TYPES: tuple[str, ...] = get_args(CommandType)
TERMINAL = frozenset({"Succeeded", "Failed", "Canceled"})
NEXT = {"Pending": "Triggered", "Triggered": "Sent", "Sent": "Succeeded"}
COMMAND_ROUTES = ("command", "commands")
DEFAULT_PAGE_SIZE = 25
COMMANDS = f"{API}/entities/{{entity_id}}/commands"

Handler = Any  # the app's route wrapper: (name, handler) -> handler


@dataclass(slots=True)
class _Command:
    id: str
    entity_id: str
    type: str
    value: str | None
    trigger_time: datetime
    status: str = "Pending"
    error: dict[str, str] | None = None
    completed_at: datetime | None = None


class CommandsMixin:
    """Entity commands, mixed into RealtoSimulator (which owns the clock and the routes)."""

    clock: Clock
    _commands: dict[str, _Command]

    # ---------------------------------------------------------------- scenario API

    def add_command(
        self,
        entity_id: str,
        *,
        command_id: str | None = None,
        type: str = "StartCharging",
        value: str | None = None,
        trigger_time: datetime | None = None,
    ) -> str:
        """A Pending command for `entity_id`, due at `trigger_time` (now by default). Returns its id."""
        if type not in TYPES:
            raise ValueError(f"unknown command type {type!r} (one of {', '.join(TYPES)})")
        cid = str(uuid.UUID(command_id)) if command_id else str(uuid.uuid4())
        if cid in self._commands:
            raise ValueError(f"command {cid!r} exists")
        eid = str(uuid.UUID(entity_id))
        self._commands[cid] = _Command(cid, eid, type, value, trigger_time or self.clock.now())
        return cid

    def advance_command(self, command_id: str) -> str:
        """One step along Pending → Triggered → Sent → Succeeded; returns the new status."""
        c = self._command(command_id)
        if c.status not in NEXT:
            raise ValueError(f"command {command_id!r} is {c.status}: it does not move on")
        c.status = NEXT[c.status]
        if c.status in TERMINAL:
            c.completed_at = self.clock.now()
        return c.status

    def fail_command(self, command_id: str, title: str, description: str) -> None:
        """`Failed`, with the error the OEM reported (from Triggered or Sent)."""
        c = self._command(command_id)
        if c.status in TERMINAL:
            raise ValueError(f"command {command_id!r} is already {c.status}")
        c.status, c.error, c.completed_at = (
            "Failed",
            {"title": title, "description": description},
            self.clock.now(),
        )

    def cancel_command(self, command_id: str) -> None:
        c = self._command(command_id)
        if c.status != "Pending":
            raise ValueError(f"command {command_id!r} is {c.status}: only a Pending one can be canceled")
        c.status, c.completed_at = "Canceled", self.clock.now()

    def command(self, command_id: str) -> dict[str, Any]:
        """The body a GET would return now."""
        return self._render_command(self._command(command_id))

    # ---------------------------------------------------------------- helpers

    def _command(self, command_id: str) -> _Command:
        try:
            found = self._commands.get(str(uuid.UUID(command_id)))
        except ValueError:
            found = None
        if found is None:
            raise KeyError(f"unknown command {command_id!r}")
        return found

    def _render_command(self, c: _Command) -> dict[str, Any]:
        verification = {
            "status": "Succeeded"
            if c.status == "Succeeded"
            else "Failed"
            if c.status == "Failed"
            else "Pending",
            "completedAt": iso_z(c.completed_at) if c.completed_at else None,
            "error": c.error,
        }
        return {
            "entityId": c.entity_id, "id": c.id, "status": c.status, "triggerTime": iso_z(c.trigger_time),
            "type": c.type, "value": c.value, "error": c.error, "verification": verification,
        }  # fmt: skip

    # ---------------------------------------------------------------- HTTP

    def _add_command_routes(self, app: web.Application, route: Handler) -> None:
        app.router.add_get(COMMANDS, route("commands", self._list_commands))
        app.router.add_post(COMMANDS, route("commands", self._send_command))
        app.router.add_get(f"{COMMANDS}/{{command_id}}", route("command", self._get_command))
        app.router.add_patch(f"{COMMANDS}/{{command_id}}/cancel", route("command", self._cancel))

    def _command_admin_routes(self) -> list[tuple[str, str, AdminAction]]:
        one = "/_sim/commands/{command_id}"

        def add(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            return self.command(self.add_command(m["entity_id"], **b))

        def fail(m: dict[str, str], b: dict[str, Any]) -> dict[str, Any]:
            self.fail_command(m["command_id"], b["title"], b["description"])
            return self.command(m["command_id"])

        return [
            ("POST", "/_sim/entities/{entity_id}/commands", add),
            ("GET", one, lambda m, b: self.command(m["command_id"])),
            ("POST", one + "/advance", lambda m, b: {"status": self.advance_command(m["command_id"])}),
            ("POST", one + "/fail", fail),
            ("POST", one + "/cancel", lambda m, b: self.cancel_command(m["command_id"])),
        ]

    def _addressed(self, request: web.Request) -> _Command | None:
        try:
            c = self._command(request.match_info["command_id"])
        except KeyError:
            return None
        return c if c.entity_id == request.match_info["entity_id"].lower() else None

    async def _get_command(self, request: web.Request) -> web.Response:
        c = self._addressed(request)
        return not_found() if c is None else json_response(self._render_command(c))

    async def _cancel(self, request: web.Request) -> web.Response:
        c = self._addressed(request)
        if c is None:
            return not_found()
        if c.status != "Pending":
            return problem(409, "Conflict", detail=f"A {c.status} command cannot be canceled.")
        self.cancel_command(c.id)
        return json_response(self._render_command(c))

    async def _send_command(self, request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
            uuid.UUID(request.match_info["entity_id"])
        except (orjson.JSONDecodeError, ValueError):
            return problem(400, "One or more validation errors occurred.")
        if not isinstance(body, dict) or body.get("type") not in TYPES:
            return problem(400, "One or more validation errors occurred.", errors={"type": ["Invalid."]})
        cid = self.add_command(request.match_info["entity_id"], type=body["type"], value=body.get("value"))
        return json_response(self.command(cid), status=201)

    async def _list_commands(self, request: web.Request) -> web.Response:
        """Commands whose trigger time is in [start, end] (end: now by default), oldest first, paged."""
        q = request.query
        try:
            start = datetime.fromisoformat(q["start"])
            end = datetime.fromisoformat(q["end"]) if "end" in q else None
            size = int(q.get("pageSize", DEFAULT_PAGE_SIZE))
            offset = (
                int(orjson.loads(unb64url(q["continuationToken"]))["o"]) if "continuationToken" in q else 0
            )
        except (KeyError, ValueError, TypeError, binascii.Error):
            return problem(400, "One or more validation errors occurred.", errors={"start": ["Required."]})
        if start.utcoffset() is None or (end is not None and end.utcoffset() is None):
            return problem(
                400, "One or more validation errors occurred.", errors={"start": ["Needs a zone."]}
            )
        entity = request.match_info["entity_id"].lower()
        found = sorted(
            (
                c
                for c in self._commands.values()
                if c.entity_id == entity
                and start <= c.trigger_time
                and (end is None or c.trigger_time <= end)
            ),
            key=lambda c: (c.trigger_time, c.id),
        )
        window = found[offset : offset + size]
        token = b64url(orjson.dumps({"o": offset + size})) if offset + size < len(found) else None
        return json_response(
            {
                "data": [self._render_command(c) for c in window],
                "links": {"next": None},
                "meta": {"continuationToken": token, "pageSize": size},
            }
        )
