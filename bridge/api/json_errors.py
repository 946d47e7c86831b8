"""Every 4xx/5xx under `/api/` is JSON: `{"error": "...", "detail": ...}`, never an HTML page.

aiohttp answers unknown routes (404), wrong methods (405) and oversized bodies (413) itself, before
any handler runs; this middleware turns those, our own `ApiError`s and unexpected failures into the
same shape. What a 500 says is generic: the traceback goes to the log, not to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import ValidationError

from bridge import errors
from bridge.logs import scrub

log = structlog.get_logger(__name__)

API_PREFIX = "/api/"
_KEPT_HEADERS = ("Allow", "WWW-Authenticate", "Retry-After")


class ApiError(errors.BridgeError):
    """An API request that cannot be answered as asked; `error` says what, `detail` how to fix it."""

    def __init__(
        self, status: int, error: str, detail: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = dict(headers or {})


def is_api(path: str) -> bool:
    return path.startswith(API_PREFIX) or path == API_PREFIX.rstrip("/")


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    """pydantic's errors without the input (it may be large or sensitive): where, what, which kind."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]


def error_response(
    status: int, error: str, detail: Any = None, *, headers: Mapping[str, str] | None = None
) -> web.Response:
    return json_response({"error": error, "detail": detail}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not is_api(request.path):
        return await handler(request)
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.error, exc.detail, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {h: exc.headers[h] for h in _KEPT_HEADERS if h in exc.headers}
        return error_response(exc.status, exc.reason.lower(), _http_detail(request, exc), headers=headers)
    except errors.StoreError as exc:
        log.error("api.store_error", method=request.method, path=request.path, error=str(exc))
        return error_response(503, "store unavailable", "the bridge cannot read its store; see its log")
    except Exception:
        log.exception("api.internal_error", method=request.method, path=request.path)
        return error_response(500, "internal error", "an unexpected error; the bridge's log has the details")


def _http_detail(request: web.Request, exc: web.HTTPException) -> str:
    if isinstance(exc, web.HTTPNotFound):
        return f"no API route {request.path!r}; see /api/openapi.json"
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return f"{request.method} is not allowed here; allowed: {', '.join(sorted(exc.allowed_methods))}"
    return exc.text or exc.reason


def json_response(
    payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON response with every registered secret value scrubbed from its strings (defence in depth)."""
    return web.Response(
        body=orjson.dumps(_scrubbed(payload)),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    return value
