"""Bearer-token guard of `/api/`: 401 without a token, 403 with a wrong one, 503 when none is configured.

The token is compared with `hmac.compare_digest` (constant time, so response timing does not leak
how much of a guess was right). With no `[server] admin_token` the API stays closed: a bridge
started without one must never expose its outbox to whoever can reach the port.
"""

from __future__ import annotations

import hmac

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.api.json_errors import ApiError, is_api
from bridge.app_keys import CONFIG

# The documents a partner codes against (no state in them): the OpenAPI and the payload schemas.
PUBLIC_PATHS = frozenset({"/api/openapi.json", "/api/schemas"})
PUBLIC_PREFIXES = ("/api/schemas/",)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wattbridge"'}


@web.middleware
async def admin_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    public = request.path in PUBLIC_PATHS or request.path.startswith(PUBLIC_PREFIXES)
    if is_api(request.path) and not public:
        check_bearer(request)
    return await handler(request)


def check_bearer(request: web.Request) -> None:
    """Raise the ApiError that refuses this request, or return when its bearer token is the admin token."""
    token = request.app[CONFIG].server.admin_token
    if token is None or not token.get_secret_value():
        raise ApiError(
            503,
            "admin API disabled",
            'set [server] admin_token in the config (e.g. admin_token = "${WATTBRIDGE_ADMIN_TOKEN}") '
            "and restart the bridge",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            401,
            "missing bearer token",
            "send the header Authorization: Bearer <admin_token>",
            headers=CHALLENGE,
        )
    if not hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode()):
        raise ApiError(403, "invalid token", "the bearer token is not this bridge's admin_token")
