"""The evaluation step on its own: an observation and its stored snapshot in, the result to commit
out (baseline, volatile-only moves, events numbered on from the snapshot, holds that end when due)."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.model import Observation, ResourceKey, Snapshot
from bridge.poll.diff import digest64, meaningful_digest
from bridge.poll.evaluate import Evaluator
from bridge.poll.listing import LISTING_MARKER, complete_listing
from bridge.rules.engine import RuleSet
from bridge.rules.loader import load_rules

WB = "podero.wallbox"
KEY = ResourceKey(source=WB, provider="podero", resource_id="wb-1")
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def rules(tmp_path: Path, body: str = "") -> RuleSet:
    (tmp_path / "rules.toml").write_text(
        textwrap.dedent(
            f"""
            [[rule]]
            id = "charging"
            source = "{WB}"
            channels = ["partner"]
            field = "is_charging"
            to = true
            {body}
            """
        )
    )
    return load_rules(["rules.toml"], base_dir=tmp_path, channels=["partner"])


def observe(state: dict[str, Any] | None, at: datetime = T0) -> Observation:
    return Observation(key=KEY, state=state, observed_at=at)


def stored(state: dict[str, Any], rs: RuleSet, sequence: int = 0) -> Snapshot:
    digest = meaningful_digest(state, source=WB, keep=rs.keep_fields(WB))
    return Snapshot(key=KEY, state=state, digest=digest, sequence=sequence, updated_at=T0)


def test_the_first_observation_is_a_baseline_that_fires_nothing(tmp_path: Path) -> None:
    rs = rules(tmp_path)
    result = Evaluator({}, digest_groups={}).observe(observe({"is_charging": True}), None, rs)
    assert result is not None
    assert result.events == ()
    assert result.snapshot.sequence == 0


def test_an_unchanged_or_volatile_only_observation_writes_nothing(tmp_path: Path) -> None:
    rs = rules(tmp_path)
    before = {"is_charging": False, "charge_rate_last_updated_at": "2026-12-06T11:00:00Z"}
    after = {"is_charging": False, "charge_rate_last_updated_at": "2026-12-06T12:00:00Z"}
    assert Evaluator({}, digest_groups={}).observe(observe(after), stored(before, rs), rs) is None


def test_a_matching_change_fires_one_event_numbered_after_the_stored_sequence(tmp_path: Path) -> None:
    rs = rules(tmp_path)
    result = Evaluator({}, digest_groups={}).observe(
        observe({"is_charging": True}), stored({"is_charging": False}, rs, sequence=7), rs
    )
    assert result is not None
    [event] = result.events
    assert (event.rule_id, event.sequence, event.status) == ("charging", 8, "firing")
    assert result.snapshot.sequence == 8
    assert result.snapshot.state == {"is_charging": True}


def test_a_held_rule_fires_only_when_its_hold_ends_on_the_timer(tmp_path: Path) -> None:
    rs = rules(tmp_path, 'for = "5m"')
    evaluate = Evaluator({}, digest_groups={})
    result = evaluate.observe(observe({"is_charging": True}), stored({"is_charging": False}, rs), rs)
    assert result is not None
    assert result.events == ()
    evaluate.remember(result.rule_states)  # as the cycle does once the result is committed
    assert evaluate.next_due() == T0 + timedelta(minutes=5)
    assert evaluate.due_now(T0 + timedelta(minutes=4)) == {}
    later = T0 + timedelta(minutes=5)
    [(key, states)] = evaluate.due_now(later).items()
    due = evaluate.due(key, result.snapshot, states, rs, later)
    assert due is not None
    assert [(e.rule_id, e.status) for e in due.events] == [("charging", "firing")]


def test_a_complete_listing_names_what_disappeared_and_baselines_once() -> None:
    listed = [observe({"is_charging": False})]
    first = complete_listing("podero", WB, listed, {}, T0)
    assert not first.appears
    assert first.marker is not None
    assert first.marker.snapshot.key.resource_id == LISTING_MARKER

    known = {LISTING_MARKER: digest64("listing"), "wb-1": 1, "wb-2": 2, "wb-3": digest64("gone")}
    later = complete_listing("podero", WB, listed, known, T0)
    assert later.appears
    assert later.marker is None
    gone = [o for o in later.observations if o.state is None]
    assert [o.key.resource_id for o in gone] == ["wb-2"]  # wb-3 had already disappeared
