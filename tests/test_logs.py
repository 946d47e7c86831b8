"""Logs never carry secrets: redaction is a processor, not a habit."""

from __future__ import annotations

import io

import orjson
import structlog
from pydantic import SecretStr

from bridge import logs


def test_secret_keys_secretstr_and_registered_values_are_redacted():
    logs.register_secrets(["canary-7f3a9c"])
    event = logs.redact(
        None,
        "info",
        {
            "event": "x",
            "client_secret": "plain-value",
            "token": "tok",
            "password": SecretStr("pw"),
            "error": "HTTP 401 for canary-7f3a9c",
            "nested": {"api_key": "k", "ok": "fine"},
            "requests": 3,
        },
    )
    assert event["client_secret"] == logs.REDACTED
    assert event["token"] == logs.REDACTED
    assert event["password"] == logs.REDACTED
    assert event["error"] == f"HTTP 401 for {logs.REDACTED}"
    assert event["nested"] == {"api_key": logs.REDACTED, "ok": "fine"}
    assert event["requests"] == 3


def test_json_lines_are_written_when_not_on_a_terminal():
    stream = io.StringIO()
    logs.configure(level="info", fmt="auto", stream=stream, cache=False)
    try:
        logs.register_secrets(["canary-b81d"])
        structlog.get_logger("t").info("poll.completed", provider="podero", error="canary-b81d leaked?")
        structlog.get_logger("t").debug("hidden")
    finally:
        structlog.reset_defaults()
    [line] = stream.getvalue().splitlines()
    record = orjson.loads(line)
    assert record["event"] == "poll.completed"
    assert record["level"] == "info"
    assert "canary-b81d" not in line
