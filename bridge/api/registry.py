"""The admin API's route registry: one decorator records each operation AND builds its aiohttp handler.

A handler declares what it takes and returns in its signature, e.g.
`async def list_events(request, query: EventListQuery) -> EventPage`. The registry reads those type
hints once: the same pydantic models then parse the query string / path / JSON body, check the
return value, and become the OpenAPI document (`openapi.py`). Spec and handlers cannot drift.
"""

from __future__ import annotations

import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from bridge.api.json_errors import ApiError, json_response, validation_detail

Handler = Callable[..., Awaitable[BaseModel]]
H = TypeVar("H", bound=Handler)

MAX_BODY_BYTES = 64 * 1024  # admin requests are tiny; a bigger body is a mistake or an attack


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    """One documented API operation: what the OpenAPI document says and what the handler does."""

    method: str
    path: str
    summary: str
    tag: str
    handler: Handler
    response: type[BaseModel]
    status: int = 200
    query: type[BaseModel] | None = None
    path_params: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()  # the operation's own error statuses, besides the common ones
    auth: bool = True

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


class ApiRoutes:
    """Collects operations; `add_to(app)` registers their aiohttp handlers."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        status: int = 200,
        errors: tuple[int, ...] = (),
        auth: bool = True,
    ) -> Callable[[H], H]:
        def record(handler: H) -> H:
            hints = typing.get_type_hints(handler)
            self.operations.append(
                Operation(
                    method=method,
                    path=path,
                    summary=summary,
                    tag=tag,
                    handler=handler,
                    response=_model(hints["return"], handler, "return"),
                    status=status,
                    query=_optional_model(hints, "query", handler),
                    path_params=_optional_model(hints, "path", handler),
                    body=_optional_model(hints, "body", handler),
                    errors=errors,
                    auth=auth,
                )
            )
            return handler

        return record

    def get(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Callable[[H], H]:
        return self.route("DELETE", path, **kw)

    def extend(self, other: ApiRoutes) -> None:
        self.operations.extend(other.operations)

    def add_to(self, app: web.Application) -> None:
        for op in self.operations:
            app.router.add_route(op.method, op.path, _endpoint(op), name=op.operation_id)


def _model(hint: Any, handler: Handler, name: str) -> type[BaseModel]:
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        return hint
    raise TypeError(f"{handler.__name__}: `{name}` must be annotated with a pydantic model, got {hint!r}")


def _optional_model(hints: Mapping[str, Any], name: str, handler: Handler) -> type[BaseModel] | None:
    return _model(hints[name], handler, name) if name in hints else None


def _endpoint(op: Operation) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        kwargs: dict[str, Any] = {}
        if op.query is not None:
            kwargs["query"] = _validate(op.query, dict(request.query), "invalid query parameters")
        if op.path_params is not None:
            kwargs["path"] = _validate(op.path_params, dict(request.match_info), "invalid path")
        if op.body is not None:
            kwargs["body"] = _validate(op.body, await _json_body(request), "invalid request body")
        result = await op.handler(request, **kwargs)
        if not isinstance(result, op.response):  # the document promises this model: keep the promise
            raise TypeError(f"{op.operation_id} returned {type(result).__name__}, not {op.response.__name__}")
        return json_response(result.model_dump(mode="json", by_alias=True), status=op.status)

    endpoint.__name__ = op.operation_id
    return endpoint


def _validate(model: type[BaseModel], data: Any, error: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, error, validation_detail(exc)) from exc


async def _json_body(request: web.Request) -> Any:
    if request.content_type != "application/json":
        raise ApiError(415, "unsupported media type", "send the body as application/json")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "request body too large", f"at most {MAX_BODY_BYTES} bytes")
    raw = await request.read()  # aiohttp caps a body without Content-Length at client_max_size
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "request body too large", f"at most {MAX_BODY_BYTES} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid JSON", str(exc)) from exc
