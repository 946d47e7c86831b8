"""The Realto simulator's shared parts: the API prefix and ProblemDetails-style error bodies (ASSUME:
Realto documents none beyond a 400 `ConnectApiErrorResult`), and base64url for tokens."""

from __future__ import annotations

import base64
from typing import Any

from aiohttp import web

from bridge.simulator import json_response

API = "/api/v1"


def problem(status: int, title: str, **extra: Any) -> web.Response:
    # ASP.NET Core ProblemDetails (RFC 9457), the stock error shape of a .NET API (ASSUME for Realto).
    body = {"type": f"https://tools.ietf.org/html/rfc9110#section-15.5.{status - 399}", "title": title}
    return json_response({**body, "status": status, **extra}, status=status)


def unauthorized(challenge: str = "Bearer") -> web.Response:
    # Brief's ASSUME body; the challenge header is what .NET's JwtBearer handler always sends.
    return json_response(
        {"title": "Unauthorized", "status": 401}, status=401, headers={"WWW-Authenticate": challenge}
    )


def not_found() -> web.Response:
    return problem(404, "Not Found")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
