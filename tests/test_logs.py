"""Logs never carry secrets: redaction is a processor, not a habit."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import orjson
import structlog
from pydantic import SecretStr

from bridge import logs
from bridge.cli.main import main


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


def test_a_secret_is_scrubbed_whole_even_when_it_contains_another_and_among_many():
    logs.register_secrets(["canary-short", "canary-short-and-longer-9d2e"])
    assert logs.scrub("x canary-short-and-longer-9d2e y") == f"x {logs.REDACTED} y"
    # Past a handful of secrets (refreshed tokens accumulate) scrub switches to one compiled pattern.
    logs.register_secrets([f"canary-many-{i:02d}-5c1b" for i in range(12)])
    assert logs.scrub("a canary-many-11-5c1b b canary-short c") == f"a {logs.REDACTED} b {logs.REDACTED} c"
    assert logs.scrub("no secret here") == "no secret here"


def test_redaction_keeps_numbers_and_flags_and_redacts_secret_keys_of_any_string_type():
    class Label(str):
        pass

    event = logs.redact(None, "info", {"attempt": 2, "ok": True, "latency_ms": 1.5, "code": None,
                                       "auth_token": Label("t0k"), "tokens_at": "2026-12-01"})  # fmt: skip
    assert event == {"attempt": 2, "ok": True, "latency_ms": 1.5, "code": None,
                     "auth_token": logs.REDACTED, "tokens_at": "2026-12-01"}  # fmt: skip


def test_the_timestamp_is_utc_with_microseconds_and_a_z():
    event = logs.timestamp(None, "info", {})
    stamp = str(event["timestamp"])
    assert len(stamp) == len("2026-12-03T14:36:06.123456Z")
    parsed = datetime.fromisoformat(stamp)
    assert parsed.tzinfo is not None
    assert parsed.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - parsed).total_seconds()) < 5


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


WB = "00000000-0000-4000-8000-0000000000b1"


def records(stream: io.StringIO, prefix: str = "") -> list[dict[str, object]]:
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    return [r for r in lines if str(r["event"]).startswith(prefix)]


async def test_each_poll_and_each_delivery_attempt_is_exactly_one_line_with_stable_keys(
    json_logs, make_config, make_bridge, podero, sink
):
    user = podero.add_user()
    podero.add_wallbox(user, wallbox_id=WB, is_charging=False)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": WB}]))
    await bridge.poll()
    sink.respond_with(500)
    podero.update_wallbox(WB, is_charging=True)
    await bridge.poll()
    await bridge.deliver()
    podero.fail("wallbox", status=500)  # the one resource fails: a completed poll that read nothing
    await bridge.poll()

    polls = records(json_logs, "poll.")
    assert [p["event"] for p in polls] == ["poll.completed"] * 3
    first, second, broken = polls
    assert {k: first[k] for k in ("provider", "group", "observations", "changes", "events", "failed")} == {
        "provider": "podero",
        "group": "wallboxes",
        "observations": 1,
        "changes": 1,
        "events": 0,
        "failed": 0,
    }
    assert isinstance(first["duration_ms"], float)
    assert (second["changes"], second["events"], second["level"]) == (1, 1, "info")
    assert (broken["failed"], broken["observations"], broken["level"]) == (1, 0, "warning")
    assert "HTTP 500" in broken["errors"][WB]  # type: ignore[index]

    [attempt] = records(json_logs, "delivery.")
    assert attempt["event"] == "delivery.attempt"
    assert (attempt["channel"], attempt["attempt"], attempt["status_code"], attempt["outcome"]) == (
        "partner",
        1,
        500,
        "pending",
    )
    assert str(attempt["delivery_id"]).startswith("msg_")
    assert isinstance(attempt["latency_ms"], float)
    assert str(attempt["next_attempt_at"]) > bridge.clock.now().isoformat()


async def test_a_poll_that_cannot_list_is_one_poll_failed_line(json_logs, make_config, make_bridge, podero):
    config = make_config()
    podero_cfg = config.providers["podero"].model_copy(update={"discover": True})
    bridge = await make_bridge(config.model_copy(update={"providers": {"podero": podero_cfg}}))
    podero.fail("users", status=503)
    summary = await bridge.poll()
    assert not summary.ok
    [failed] = records(json_logs, "poll.")
    assert (failed["event"], failed["kind"], failed["level"]) == ("poll.failed", "unavailable", "warning")
    assert (failed["provider"], failed["group"]) == ("podero", "wallboxes")
    assert "HTTP 503" in str(failed["error"])
    assert isinstance(failed["duration_ms"], float)


def test_log_level_and_format_flags_reach_the_renderer(capsys, repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert (
        main(["--log-format", "console", "--log-level", "warning", "check", "-c", "config.example.toml"]) == 0
    )
    structlog.get_logger("t").info("poll.completed", provider="dropped")
    structlog.get_logger("t").warning("poll.failed", provider="kept")
    err = capsys.readouterr().err
    assert "dropped" not in err
    assert "poll.failed" in err
    assert "provider=kept" in err  # key=value, not JSON
    assert not err.lstrip().startswith("{")

    assert main(["--log-level", "debug", "check", "-c", "config.example.toml"]) == 0  # auto: not a TTY
    structlog.get_logger("t").debug("poll.completed", provider="shown")
    [line] = capsys.readouterr().err.splitlines()
    assert orjson.loads(line)["provider"] == "shown"
