"""`GET /api/schemas` and `GET /api/schemas/{type}`: the payload contract of every event type.

The schemas are generated from the envelope models (`bridge.contracts`) for the event types the
running rule set emits, so a reload that adds a type adds its schema. Like `/api/openapi.json` they
need no token: they are what a partner codes against, and hold no state, only shapes and type names.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from bridge.api.json_errors import ApiError
from bridge.api.models import Response
from bridge.api.registry import ApiRoutes
from bridge.app_keys import RULEBOOK
from bridge.contracts.schemas import event_types, schema_document

routes = ApiRoutes()


class SchemaRef(Response):
    type: str = Field(description="the envelope's `type`")
    sources: list[str] = Field(description="the sources whose rules emit it (`data.source`)")
    url: str = Field(description="where its JSON Schema is served")


class SchemaList(Response):
    """Every event type the running rules (and the bridge itself) can send."""

    items: list[SchemaRef]


class JsonSchema(RootModel[dict[str, Any]]):
    """A JSON Schema (2020-12) document of one event type's webhook body."""


class TypePath(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str = Field(min_length=1, max_length=200, description="an event type, e.g. wallbox.action_needed")


@routes.get(
    "/api/schemas", summary="The event types and where their JSON Schemas are", tag="schemas", auth=False
)
async def list_schemas(request: web.Request) -> SchemaList:
    types = event_types(request.app[RULEBOOK].current.rules)
    return SchemaList(
        items=[SchemaRef(type=t, sources=list(s), url=f"/api/schemas/{t}") for t, s in types.items()]
    )


@routes.get(
    "/api/schemas/{type}",
    summary="The JSON Schema of one event type's webhook body",
    tag="schemas",
    errors=(404,),
    auth=False,
)
async def get_schema(request: web.Request, path: TypePath) -> JsonSchema:
    types = event_types(request.app[RULEBOOK].current.rules)
    if path.type not in types:
        raise ApiError(404, "no such event type", f"known: {', '.join(types)}")
    return JsonSchema(schema_document(path.type, types[path.type]))
