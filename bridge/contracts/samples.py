"""A realistic sample event per source, for `wattbridge check` to render body templates with.

States come from the bundled simulators (the fakes the demo and the tests poll), shaped as the
provider stores them, so a template that works on a sample reads fields a real poll has. `old`
is the state before one plausible change, so `old.X` reads resolve too.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.clock import ManualClock
from bridge.contracts.envelope import TEST_TYPE
from bridge.model import Change, Event, ResourceKey

AT = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def _json(value: Any) -> dict[str, Any]:
    """As a poll decodes it: datetimes become strings, exactly as on the wire."""
    out: dict[str, Any] = orjson.loads(orjson.dumps(value))
    return out


@functools.cache
def _states() -> dict[str, tuple[dict[str, Any], dict[str, Any], Change]]:
    """source → (old state, new state, the change between them)."""
    from bridge.poll.health import ProviderHealth
    from bridge.providers.podero import with_status
    from bridge.providers.wattshift import normalise_brand
    from bridge.simulator.podero import PoderoSimulator
    from bridge.simulator.realto import RealtoSimulator
    from bridge.simulator.wattshift import WattShiftSimulator

    clock = ManualClock(AT)
    podero = PoderoSimulator(clock=clock)
    user = podero.add_user(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    box = podero.add_wallbox(user)
    old_box = _json(podero.wallbox(box))
    podero.update_wallbox(box, is_plugged_in=True, is_charging=True, charge_rate_w=7200)
    session = podero.add_onboarding_session(user)
    old_session = _json(with_status(podero.onboarding_session(session), AT))
    podero.finish_onboarding(session)
    realto = RealtoSimulator(clock=clock)
    guided = realto.add_session()
    old_guided = _json(realto.session(guided))
    realto.succeed(guided)
    wattshift = WattShiftSimulator(clock=clock)
    home = wattshift.add_home(home_id="ws_home_123456789")
    wattshift.start(home)
    old_home = _json(normalise_brand(wattshift.status(home)))
    wattshift.complete(home)
    new_home = _json(normalise_brand(wattshift.status(home)))
    new_session = _json(with_status(podero.onboarding_session(session), AT))
    new_guided = _json(realto.session(guided))
    # Built by the code that builds it in a poll, so the sample cannot drift from what is sent.
    provider_ok = ProviderHealth(provider="podero", last_success_at=AT, last_poll_at=AT).as_state(AT)
    channel_ok = {
        "channel": "partner",
        "status": "ok",
        "consecutive_failures": 0,
        "last_error": None,
        "paused_until": None,
    }
    return {
        "podero.wallbox": (
            old_box,
            _json(podero.wallbox(box)),
            Change(field="is_charging", old=False, new=True),
        ),
        "podero.onboarding_session": (
            old_session,
            new_session,
            Change(field="object_id", old=None, new=new_session["object_id"]),
        ),
        "realto.guided_onboarding_session": (
            old_guided,
            new_guided,
            Change(
                field="onboardingRequest.status",
                old=old_guided["onboardingRequest"]["status"],
                new=new_guided["onboardingRequest"]["status"],
            ),
        ),
        "wattshift.onboarding": (
            old_home,
            new_home,
            Change(field="status", old=old_home["status"], new=new_home["status"]),
        ),
        "bridge.provider": (
            {**provider_ok, "status": "ok"},
            {**provider_ok, "status": "down", "consecutive_failures": 3, "last_error": "HTTP 503"},
            Change(field="status", old="ok", new="down"),
        ),
        "bridge.channel": (
            channel_ok,
            {**channel_ok, "status": "paused", "consecutive_failures": 5, "last_error": "HTTP 500"},
            Change(field="status", old="ok", new="paused"),
        ),
    }


def sample_event(source: str, *, event_type: str = "sample.event", rule: str = "sample-rule") -> Event:
    """A firing event of `source` with a realistic state; KeyError for an unknown source."""
    _, new, change = _states()[source]
    provider = "bridge" if source.startswith("bridge.") else source.split(".", 1)[0]
    return Event(
        id="evt_sample",
        rule_id=rule,
        type=event_type,
        status="firing",
        severity="warning",
        key=ResourceKey(source=source, provider=provider, resource_id=str(new.get("id") or "sample-1")),
        sequence=1,
        changes=(change,),
        state=new,
        occurred_at=AT,
    )


def sample_old(source: str) -> dict[str, Any]:
    """The state before `sample_event(source)`'s change."""
    return _states()[source][0]


def channel_test_event(channel: str) -> Event:
    """What `wattbridge channels test` sends (no rule behind it)."""
    return Event(
        id="evt_test",
        rule_id=TEST_TYPE,
        type=TEST_TYPE,
        status="firing",
        severity="info",
        key=ResourceKey(source="bridge.channel", provider="bridge", resource_id=channel),
        sequence=0,
        changes=(),
        state={"channel": channel, "message": "A test notification from `wattbridge channels test`."},
        occurred_at=AT,
    )
