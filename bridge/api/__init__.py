"""HTTP surface of `wattbridge run`: health probes, and the admin API under `/api/` with its OpenAPI.

`setup_admin_api(app)` is the one call `create_app` makes: JSON errors and the bearer guard as
middlewares, every operation's route, and `/api/openapi.json` generated from the same operations.
"""

from __future__ import annotations

from aiohttp import web

from bridge.api import (
    acks,
    channel_enable,
    deliveries,
    events,
    explain,
    flapping,
    openapi,
    providers,
    rules,
    schemas,
    silences,
    watches,
)
from bridge.api.auth import admin_auth
from bridge.api.json_errors import json_errors
from bridge.api.registry import ApiRoutes


def admin_operations() -> ApiRoutes:
    """Every admin API operation, in the order the OpenAPI document lists them."""
    api = ApiRoutes()
    modules = (
        events,
        deliveries,
        channel_enable,
        silences,
        acks,
        rules,
        explain,
        flapping,
        providers,
        watches,
        schemas,
    )
    for module in modules:
        api.extend(module.routes)
    return api


def setup_admin_api(app: web.Application) -> None:
    api = admin_operations()
    app.middlewares.extend([json_errors, admin_auth])
    api.add_to(app)
    app.add_routes(openapi.routes(api.operations))
