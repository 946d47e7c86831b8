"""Schemathesis against the live bridge's own `/api/openapi.json`: generated requests (valid and
invalid) must never cause a server error, and every response must match the document.

The bridge runs on a real socket in the test's event loop; schemathesis is synchronous (requests),
so it runs in a worker thread. Examples per operation and mode are bounded to keep the run short.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is a dev dependency")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402 -- after the skip check
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.specs.openapi import checks as openapi_checks  # noqa: E402

from tests.api.conftest import AUTH, Api  # noqa: E402

EXAMPLES = 12  # per operation and generation mode: about 360 cases
# Operations with no input at all (no parameter, no body, no token): nothing to make invalid.
NO_NEGATIVE = {"GET /api/schemas"}


@dataclass
class Run:
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _checks() -> list[Any]:
    return [
        schemathesis.checks.not_a_server_error,
        openapi_checks.status_code_conformance,
        openapi_checks.content_type_conformance,
        openapi_checks.response_headers_conformance,
        openapi_checks.response_schema_conformance,
        openapi_checks.negative_data_rejection,
        openapi_checks.ignored_auth,
    ]


def _fuzz(base_url: str) -> Run:
    schema = schemathesis.openapi.from_url(f"{base_url}/api/openapi.json")
    run = Run()
    checks = _checks()
    session = requests.Session()  # keep-alive: a new connection per case costs more than the case
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            if mode is GenerationMode.NEGATIVE and operation.label in NO_NEGATIVE:
                continue

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def fuzz(case: Any) -> None:
                response = case.call_and_validate(
                    base_url=base_url, session=session, headers=AUTH, checks=checks
                )
                run.cases += 1
                run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1

            try:
                fuzz()
            except Exception as exc:
                run.failures.append(f"{operation.label} ({mode}): {exc}")
    return run


async def _populate(api: Api, podero: Any) -> None:
    """Real rows of every kind, so listings are checked with content, not only empty."""
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_plugged_in=True, is_charging=False)
    await api.post(
        "/api/watches",
        {"source": "podero.wallbox", "provider": "podero", "user_id": user, "wallbox_id": wb},
        status=201,
    )
    await api.bridge.poll()
    podero.update_wallbox(wb, is_charging=True)
    api.bridge.clock.advance(timedelta(seconds=60))
    await api.bridge.poll()
    await api.bridge.deliver()
    await api.post(
        "/api/silences", {"rule": "charging-started", "duration": "1h", "comment": "fuzzing"}, status=201
    )


@pytest.mark.timeout(180)  # generation is CPU-bound; a loaded CI machine must not fail it by time
async def test_schemathesis_finds_no_server_error_and_no_response_off_the_schema(api, podero):
    await _populate(api, podero)
    base_url = str(api.bridge.client.make_url("")).rstrip("/")
    run = await asyncio.to_thread(_fuzz, base_url)
    print(f"schemathesis: {run.cases} cases, statuses {dict(sorted(run.statuses.items()))}")  # noqa: T201
    assert run.failures == []
    assert run.cases >= 100  # it really exercised the API
    assert not any(status >= 500 for status in run.statuses)
