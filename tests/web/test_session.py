"""Status-page sessions: HMAC values that never contain the token, die with a token change, and carry
their own CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.web.session import Sessions

NOW = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def test_a_changed_token_ends_every_session_and_csrf_tokens_are_per_session():
    sessions = Sessions("first-admin-token-0001")
    a, b = sessions.issue(NOW), sessions.issue(NOW)
    assert a != b
    assert "first-admin-token-0001" not in a
    assert sessions.valid(a, NOW)
    assert sessions.valid(b, NOW + timedelta(hours=11))
    assert not Sessions("second-admin-token-002").valid(a, NOW)

    assert sessions.csrf(a) != sessions.csrf(b)
    assert sessions.csrf_matches(a, sessions.csrf(a))
    assert not sessions.csrf_matches(b, sessions.csrf(a))


def test_revoking_one_session_leaves_the_others_and_an_empty_token_is_refused():
    sessions = Sessions("first-admin-token-0001")
    a, b = sessions.issue(NOW), sessions.issue(NOW)
    sessions.revoke(a, NOW)
    assert not sessions.valid(a, NOW)
    assert sessions.valid(b, NOW)
    assert not sessions.valid(sessions.issue(NOW + timedelta(hours=1)), NOW)  # from the future
    with pytest.raises(ValueError, match="empty admin token"):
        Sessions("")
