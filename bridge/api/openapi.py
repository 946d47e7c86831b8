"""`GET /api/openapi.json`: the OpenAPI 3.1 document, generated from the registry's operations.

Schemas come from the very pydantic models the handlers validate with (requests in validation mode,
responses in serialization mode), collected into `components.schemas`; query and path parameters
are the fields of the handler's `query` / `path` models. OpenAPI 3.1 is JSON Schema 2020-12, which
is what pydantic emits, so nothing is translated by hand. The webhook bodies the bridge sends are
OpenAPI 3.1 `webhooks`, one per event type of the running rules, their schemas generated from the
envelope models (`bridge.contracts`) into the same `components.schemas`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from bridge import __version__
from bridge.api.json_errors import json_response
from bridge.api.models import ErrorBody
from bridge.api.registry import Operation
from bridge.app_keys import RULEBOOK
from bridge.contracts import schemas as contracts

REF = "#/components/schemas/{model}"
_ERROR_TEXT = {
    400: "the body is not valid JSON",
    401: "no bearer token (see WWW-Authenticate)",
    403: "the bearer token is wrong",
    404: "no such resource",
    409: "the resource is not in a state that allows this",
    413: "the body is too large",
    415: "the body is not application/json",
    422: "the request is invalid; `detail` says what to fix",
    503: "the admin API is disabled (no admin_token) or the store is unavailable",
}


def build_document(
    operations: Sequence[Operation], event_types: Mapping[str, tuple[str, ...]] | None = None
) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorBody, "serialization")]
    for op in operations:
        wanted.append((op.response, "serialization"))
        if op.body is not None:
            wanted.append((op.body, "validation"))
    refs, defs = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    error_ref = refs[(ErrorBody, "serialization")]
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        item: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op, schemas),
            "responses": {
                str(op.status): {
                    "description": op.response.__doc__ or op.response.__name__,
                    "content": {"application/json": {"schema": refs[(op.response, "serialization")]}},
                },
                **{
                    str(code): {
                        "description": _ERROR_TEXT.get(code, "error"),
                        "content": {"application/json": {"schema": error_ref}},
                    }
                    for code in _error_codes(op)
                },
            },
        }
        if op.body is not None:
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(op.body, "validation")]}},
            }
        if not op.auth:
            item["security"] = []
        paths.setdefault(op.path, {})[op.method.lower()] = item
    webhooks: dict[str, Any] = {}
    if event_types:
        by_type, defs = contracts.components(event_types, REF)
        schemas.update(defs)
        for event_type, ref in by_type.items():
            webhooks[event_type] = {
                "post": {
                    "operationId": f"webhook:{event_type}",
                    "summary": f"The {event_type!r} event (Standard Webhooks signed)",
                    "tags": ["webhooks"],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": ref}}},
                    "responses": {"200": {"description": "any 2xx acknowledges the event"}},
                }
            }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wattbridge admin API",
            "version": __version__,
            "description": "Events, deliveries (replay), silences, rules (reload), providers and watches. "
            "Every error is JSON: {error, detail}.",
        },
        "paths": paths,
        "webhooks": webhooks,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "admin_token"}},
        },
        "security": [{"bearer": []}],
    }


def _error_codes(op: Operation) -> list[int]:
    codes = set(op.errors)
    if op.auth:
        codes |= {401, 403, 503}
    if op.query is not None or op.path_params is not None or op.body is not None:
        codes.add(422)
    if op.body is not None:
        codes |= {400, 413, 415}
    codes.add(503)  # the store can be unavailable
    return sorted(codes)


def _parameters(op: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for where, model in (("path", op.path_params), ("query", op.query)):
        if model is None:
            continue
        schema = model.model_json_schema(ref_template=REF, mode="validation")
        schemas.update(schema.get("$defs", {}))
        required = set(schema.get("required", ()))
        for name, prop in schema.get("properties", {}).items():
            prop = _without_null(prop)
            param: dict[str, Any] = {
                "name": name,
                "in": where,
                "required": where == "path" or name in required,
                "schema": prop,
            }
            if "description" in prop:
                param["description"] = prop["description"]
            params.append(param)
    return params


def _without_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: `X | None` becomes plain `X`."""
    out = {k: v for k, v in prop.items() if not (k == "default" and v is None)}
    variants = out.pop("anyOf", None)
    if variants is None:
        return out
    rest = [v for v in variants if v != {"type": "null"}]
    if len(rest) == 1:
        return {**rest[0], **out}
    return {**out, "anyOf": rest}


def routes(operations: Sequence[Operation]) -> web.RouteTableDef:
    """The document's route. It is built on first request, not with the app (tests build many apps),
    and again after a rule reload changed the event types."""
    table = web.RouteTableDef()
    built: dict[tuple[tuple[str, tuple[str, ...]], ...], dict[str, Any]] = {}

    @table.get("/api/openapi.json")
    async def openapi(request: web.Request) -> web.Response:
        types = contracts.event_types(request.app[RULEBOOK].current.rules)
        key = tuple(types.items())
        if key not in built:
            built.clear()
            built[key] = build_document(operations, types)
        return json_response(built[key])

    return table
