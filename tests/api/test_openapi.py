"""The OpenAPI document matches what the app serves: every /api/ route is documented, from the very
models the handlers validate with."""

from __future__ import annotations

from bridge.api import admin_operations
from bridge.api.models import SilenceCreate
from bridge.api.watch_models import WatchOut


async def test_every_api_route_the_app_serves_is_in_the_document_and_nothing_else(api):
    doc = await api.get("/api/openapi.json", auth=False)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in api.bridge.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/")
        and route.resource.canonical != "/api/openapi.json"
        and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in doc["paths"].items() for method in item}
    assert documented == served
    # 17 + POST /api/channels/{name}/enable (#18) + GET /api/explain, GET /api/firings, POST /api/acks,
    # GET /api/flapping (#14)
    assert len(served) == 22


async def test_the_document_is_openapi_3_1_with_bearer_security_and_the_handlers_models(api):
    doc = await api.get("/api/openapi.json", auth=False)
    assert doc["openapi"] == "3.1.0"
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "admin_token",
    }
    assert doc["security"] == [{"bearer": []}]
    schemas = doc["components"]["schemas"]
    assert (
        schemas["SilenceCreate"]["properties"].keys()
        == SilenceCreate.model_json_schema()["properties"].keys()
    )
    assert schemas["WatchOut"]["required"] == WatchOut.model_json_schema(mode="serialization")["required"]
    create = doc["paths"]["/api/silences"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SilenceCreate"
    }
    assert set(create["responses"]) == {"201", "400", "401", "403", "413", "415", "422", "503"}
    params = {p["name"]: p for p in doc["paths"]["/api/events"]["get"]["parameters"]}
    assert params["since"]["schema"]["format"] == "date-time"  # `X | None` is an optional X, not a null
    assert "anyOf" not in params["since"]["schema"]
    assert params["since"]["description"] == "occurred at or after (inclusive)"
    assert params["limit"]["schema"]["maximum"] == 500
    assert all(not p["required"] for p in params.values())
    (path_param,) = doc["paths"]["/api/watches/{id}"]["get"]["parameters"]
    assert path_param["in"] == "path"
    assert path_param["required"] is True


def test_each_operation_is_described_by_its_handlers_signature():
    ops = {op.operation_id: op for op in admin_operations().operations}
    create = ops["create_watch"]
    assert (create.method, create.path, create.status) == ("POST", "/api/watches", 201)
    assert create.body is not None
    assert create.body.__name__ == "WatchCreate"
    assert ops["list_events"].query is not None
    assert ops["list_events"].query.__name__ == "EventListQuery"
    assert ops["list_events"].response.__name__ == "EventPage"
    assert ops["get_delivery"].path_params is not None
