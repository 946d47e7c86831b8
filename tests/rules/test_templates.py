"""Templates and `if` expressions: the filters partners use, and rendering that never raises."""

from __future__ import annotations

import pytest

from bridge.rules.templates import MAX_OUTPUT, Expression, Template, compile_error


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (5400, "1h 30m"),
        (59, "59s"),
        (0, "0s"),
        (90061, "1d 1h"),
        ("3600", "1h"),
        (None, "None"),
        ("soon", "soon"),
    ],
)
def test_the_duration_filter_reads_seconds_for_a_person(value, text):
    assert Template("{{ v | duration }}", rule_id="r", name="t").render({"v": value}) == text


def test_the_localtime_filter_formats_iso_timestamps_and_passes_anything_else_through():
    t = Template("{{ v | localtime }}|{{ v | localtime('%H:%M') }}", rule_id="r", name="t")

    assert t.render({"v": "2026-11-22T21:05:00Z"}) == "2026-11-22 21:05 UTC|21:05"
    assert t.render({"v": "not a time"}) == "not a time|not a time"


def test_a_template_that_fails_at_run_time_returns_its_source_with_the_error_noted():
    t = Template("Hi {{ new.owner.email }}", rule_id="r", name="email.subject")

    text = t.render({"new": {}})

    assert text.startswith("[template error in email.subject: ")
    assert text.endswith("Hi {{ new.owner.email }}")


def test_an_html_template_error_note_is_escaped():
    t = Template("<p>{{ new.x.y }}</p>", rule_id="r", name="email.html", autoescape=True)

    text = t.render({"new": {}})

    assert text.startswith("<pre>[template error in email.html: ")
    assert "&lt;p&gt;" in text


def test_output_over_64_kib_is_truncated_and_says_so():
    text = Template("{{ 'x' * n }}", rule_id="r", name="body").render({"n": MAX_OUTPUT + 10})

    assert text.endswith("\n[truncated: output exceeded 64 KiB]")
    assert len(text) == MAX_OUTPUT + len("\n[truncated: output exceeded 64 KiB]")


def test_the_sandbox_refuses_unsafe_attribute_access():
    probe = Expression("new.__class__.__mro__", rule_id="r")

    assert probe({"new": {}}) is False


def test_compile_error_names_the_problem_or_is_none():
    assert compile_error("new.is_charging", expression=True) is None
    assert compile_error("{{ new.x", expression=False).startswith("does not compile: ")
