"""The Podero simulator's shared parts: ids, JSON helpers, and request parsing the way Django Ninja does it
(uuid path parameters, `include_deleted`, 422 bodies), so every resource family answers alike."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from bridge.simulator import iso_z, json_response

API = "/api/partners/v2.0"
DEFAULT_ORG = "00000000-0000-4000-8000-000000000001"

_UUID = TypeAdapter(uuid.UUID)
_BOOL = TypeAdapter(bool)


class Unprocessable(Exception):
    """A Django Ninja validation failure: 422 `{"detail": [...]}`."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        super().__init__("validation failed")
        self.items = items


@dataclass(slots=True)
class User:
    id: str
    data: dict[str, Any]


def new_id(given: str | None = None) -> str:
    return str(uuid.UUID(given)) if given is not None else str(uuid.uuid4())


def jsonable(value: Any) -> Any:
    return iso_z(value) if isinstance(value, datetime) else value


def not_found() -> web.Response:
    return json_response({"detail": "Not Found"}, status=404)


def unauthorized() -> web.Response:
    return json_response({"detail": "Unauthorized"}, status=401)


# -------------------------------------------------------------------- request parsing, Ninja style


async def read_body(request: web.Request) -> dict[str, Any]:
    """JSON as documented; a form body too (lenient, like DOT's stock OAuthLibCore)."""
    raw = await request.read()
    if request.content_type == "application/x-www-form-urlencoded":
        return dict((await request.post()).items())
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def ninja_items(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, Any]]:
    items = []
    for error in exc.errors(include_url=False):
        item: dict[str, Any] = {"type": error["type"], "loc": [*prefix, *error["loc"]], "msg": error["msg"]}
        if "ctx" in error:
            item["ctx"] = {k: str(v) for k, v in error["ctx"].items()}
        items.append(item)
    return items


def path_uuids(request: web.Request, *names: str) -> list[str]:
    """Validate uuid path parameters the way Ninja does (pydantic), collecting every error."""
    values, problems = [], []
    for name in names:
        try:
            values.append(str(_UUID.validate_python(request.match_info[name])))
        except ValidationError as exc:
            problems += ninja_items(exc, ("path", name))
    problems += _query_problems(request)
    if problems:
        raise Unprocessable(problems)
    return values


def _query_problems(request: web.Request) -> list[dict[str, Any]]:
    if "include_deleted" not in request.query:
        return []
    try:
        _BOOL.validate_python(request.query["include_deleted"])
    except ValidationError as exc:
        return ninja_items(exc, ("query", "include_deleted"))
    return []


def include_deleted(request: web.Request) -> bool:
    return bool(_BOOL.validate_python(request.query.get("include_deleted", "false")))


@web.middleware
async def ninja_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPMethodNotAllowed:
        return json_response({"detail": "Method not allowed"}, status=405)
