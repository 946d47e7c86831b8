"""Message templates: sandboxed, strict, capped in size, with duration and local-time filters; a
template that fails at run time still yields a message, with the error noted in it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.rules.templates import MAX_OUTPUT, Expression, Template, compile_error


def render(source: str, **context: object) -> str:
    return Template(source, rule_id="r", name="email.body").render(dict(context))


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (5400, "1h 30m"),
        ("59", "59s"),
        (90061, "1d 1h"),
        (0, "0s"),
        (-120, "-2m"),
        (timedelta(minutes=45), "45m"),
    ],
)
def test_the_duration_filter_shows_seconds_as_the_two_largest_units(value, shown):
    assert render("{{ v | duration }}", v=value) == shown


def test_the_duration_filter_shows_what_is_not_a_number_as_it_is():
    assert render("{{ v | duration }}", v="soon") == "soon"


def test_localtime_shows_a_utc_timestamp_in_the_named_time_zone():
    assert render('{{ t | localtime("Europe/Vienna", "%H:%M %Z") }}', t="2026-11-22T21:05:00Z") == "22:05 CET"
    assert render('{{ t | localtime("Europe/Vienna", "%H:%M") }}', t="2026-07-01T21:05:00+00:00") == "23:05"
    assert (
        render("{{ t | localtime }}", t=datetime(2026, 11, 22, 21, 5, tzinfo=UTC)) == "2026-11-22 21:05 UTC"
    )


def test_localtime_reads_a_naive_time_as_utc_and_leaves_a_non_time_alone():
    assert render('{{ t | localtime("America/New_York", "%H:%M") }}', t="2026-11-22T21:05:00") == "16:05"
    assert render('{{ t | localtime("Europe/Vienna") }}', t="never") == "never"


def test_an_unknown_time_zone_is_a_run_time_error_noted_in_the_message():
    text = render('Due {{ t | localtime("Mars/Olympus") }}', t="2026-11-22T21:05:00Z")
    assert text.startswith("[template error in email.body: localtime: unknown time zone 'Mars/Olympus'")
    assert text.endswith('Due {{ t | localtime("Mars/Olympus") }}')  # the source follows, for context


def test_a_missing_field_fails_loudly_in_the_message_instead_of_rendering_empty():
    text = render("Owner: {{ new.owner.emial }}", new={"owner": {"email": "a@example.com"}})
    assert text.startswith("[template error in email.body:")
    assert "emial" in text


def test_output_beyond_the_cap_is_truncated_and_says_so():
    text = render("{{ 'x' * n }}", n=MAX_OUTPUT * 2)
    assert len(text) < MAX_OUTPUT + 100
    assert text.endswith("\n[truncated: output exceeded 64 KiB]")


def test_the_sandbox_refuses_to_reach_python_internals():
    text = render("{{ new.__class__.__mro__ }}", new={})
    assert text.startswith("[template error in email.body:")
    assert Expression("new.__class__.__init__.__globals__", rule_id="r")({"new": {}}) is False


def test_a_template_that_does_not_compile_is_reported_before_it_runs():
    assert compile_error("{{ new.x ", expression=False) is not None
    assert compile_error("new.x ==", expression=True) is not None
    assert compile_error("{{ new.x | duration }}", expression=False) is None
