"""The bearer guard and the JSON error shape of everything under /api/."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.api.conftest import ADMIN_TOKEN


def _cursor(at: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([at, "evt_x"])).decode().rstrip("=")


ENDPOINTS = [
    ("GET", "/api/events"),
    ("GET", "/api/deliveries"),
    ("GET", "/api/deliveries/msg_x"),
    ("POST", "/api/deliveries/msg_x/replay"),
    ("GET", "/api/silences"),
    ("POST", "/api/silences"),
    ("GET", "/api/silences/sil_x"),
    ("DELETE", "/api/silences/sil_x"),
    ("GET", "/api/rules"),
    ("POST", "/api/rules/reload"),
    ("GET", "/api/providers"),
    ("GET", "/api/watches"),
    ("POST", "/api/watches"),
    ("GET", "/api/watches/wat_x"),
    ("DELETE", "/api/watches/wat_x"),
    ("GET", "/api/no-such-route"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_api_route_refuses_a_request_without_a_token_with_401_and_a_bearer_challenge(
    api, method, path
):
    resp, body = await api.call(method, path, auth=False, status=401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["error"] == "missing bearer token"
    assert "Authorization: Bearer" in body["detail"]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_api_route_refuses_a_wrong_token_with_403(api, method, path):
    _, body = await api.call(
        method, path, auth=False, headers={"Authorization": "Bearer not-the-token"}, status=403
    )
    assert body == {"error": "invalid token", "detail": "the bearer token is not this bridge's admin_token"}


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(f"Basic {ADMIN_TOKEN}", id="another-scheme"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer    ", id="blank-token"),
    ],
)
async def test_a_malformed_authorization_header_is_a_401(api, header):
    await api.call("GET", "/api/events", auth=False, headers={"Authorization": header}, status=401)


async def test_a_token_with_non_ascii_characters_is_refused_not_crashed_on(api):
    await api.call(
        "GET", "/api/events", auth=False, headers={"Authorization": "Bearer jeton-été"}, status=403
    )


async def test_the_bearer_scheme_is_case_insensitive(api):
    await api.call(
        "GET", "/api/events", auth=False, headers={"Authorization": f"bearer {ADMIN_TOKEN}"}, status=200
    )


async def test_without_an_admin_token_configured_the_api_stays_closed_with_503(make_api, api_config):
    api = await make_api(api_config(admin_token=None))
    for headers in ({}, {"Authorization": "Bearer anything"}):
        _, body = await api.call("GET", "/api/events", auth=False, headers=headers, status=503)
        assert body["error"] == "admin API disabled"
        assert "admin_token" in body["detail"]
    resp = await api.bridge.client.get("/healthz")
    assert resp.status == 200


async def test_the_openapi_document_and_the_health_probes_need_no_token(api):
    _, doc = await api.call("GET", "/api/openapi.json", auth=False, status=200)
    assert doc["openapi"] == "3.1.0"
    assert (await api.bridge.client.get("/healthz")).status == 200


async def test_an_unknown_api_route_is_a_json_404(api):
    _, body = await api.call("GET", "/api/nothing/here", status=404)
    assert body["error"] == "not found"
    assert "/api/openapi.json" in body["detail"]


async def test_a_wrong_method_is_a_json_405_naming_the_allowed_ones(api):
    resp, body = await api.call("PUT", "/api/silences", status=405)
    assert body["error"] == "method not allowed"
    assert "GET" in body["detail"]
    assert "POST" in body["detail"]
    assert "POST" in resp.headers["Allow"]


async def test_a_body_that_is_not_json_is_a_400(api):
    _, body = await api.call(
        "POST",
        "/api/silences",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        status=400,
    )
    assert body["error"] == "invalid JSON"


async def test_a_body_that_is_not_declared_as_json_is_a_415(api):
    _, body = await api.call("POST", "/api/silences", data=b"rule=x", status=415)
    assert body["error"] == "unsupported media type"


async def test_a_body_too_large_is_a_413(api):
    big = {"rule": "x", "duration": "1h", "comment": "y" * 70_000}
    _, body = await api.call("POST", "/api/silences", json=big, status=413)
    assert body["error"] == "request body too large"


async def test_a_body_that_violates_the_model_is_a_422_with_each_problem_located(api):
    _, body = await api.call(
        "POST", "/api/silences", json={"rule": "x", "duration": "soon", "typo": 1}, status=422
    )
    assert body["error"] == "invalid request body"
    where = {tuple(p["loc"]): p["type"] for p in body["detail"]}
    assert where[("comment",)] == "missing"
    assert where[("typo",)] == "extra_forbidden"
    assert ("duration",) in where
    assert all(set(p) == {"loc", "msg", "type"} for p in body["detail"])  # never the input back


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("limit=0", id="limit-too-small"),
        pytest.param("limit=many", id="limit-not-a-number"),
        pytest.param("since=2026-11-22T21:00:00", id="time-without-timezone"),
        pytest.param("since=9999-12-31T23:59:59-23:59", id="time-past-the-range"),
        pytest.param("cursor=bm90LWEtY3Vyc29y", id="cursor-forged"),
        pytest.param(f"cursor={_cursor('9999-12-31T23:59:59-23:59')}", id="cursor-forged-out-of-range"),
        pytest.param(f"cursor={_cursor('2026-11-22T21:00:00')}", id="cursor-forged-without-timezone"),
        pytest.param("rule=x&color=blue", id="unknown-parameter"),
    ],
)
async def test_invalid_query_parameters_are_a_422(api, query):
    _, body = await api.call("GET", f"/api/events?{query}", status=422)
    assert body["error"] == "invalid query parameters"
    assert body["detail"]
