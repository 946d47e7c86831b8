"""The `flap` key (#14): `check` refuses a bad one at its FILE:LINE and key, and the window slides:
changes older than `within` no longer count, and a spell settles only after `settle` of quiet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.errors import RuleError
from bridge.model import ResourceKey
from bridge.notify.rulebook import load_for
from bridge.rules import flap

GOOD = """
[[rule]]
id = "wallbox-connection"
source = "podero.wallbox"
field = "connection"
to = "offline"
channels = ["ops"]
flap = { changes = 6, within = "10m", settle = "15m" }
"""


def problems(make_config, rules: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(RuleError) as caught:
        load_for(make_config(rules=rules))
    return [(p.line, p.key, p.message) for p in caught.value.problems]


def test_a_good_flap_key_compiles_to_its_spec(make_config):
    [rule] = load_for(make_config(rules=GOOD)).rules
    assert rule.flap == flap.FlapSpec(changes=6, within=timedelta(minutes=10), settle=timedelta(minutes=15))


def test_bad_flap_values_and_keys_are_refused_at_their_line(make_config):
    bad = GOOD.replace(
        'flap = { changes = 6, within = "10m", settle = "15m" }',
        'flap = { changes = 0, within = "10x", settle = "15m", chnages = 6 }',
    )
    found = problems(make_config, bad)
    assert [(line, key) for line, key, _ in found] == [
        (8, "rule[0].flap.changes"),
        (8, "rule[0].flap.within"),
        (8, "rule[0].flap.chnages"),
    ]
    assert "greater than or equal to 1" in found[0][2]
    assert "invalid duration '10x'" in found[1][2]


def test_a_flap_table_reports_its_own_lines_and_a_zero_window_is_refused(make_config):
    table = GOOD.replace(
        'flap = { changes = 6, within = "10m", settle = "15m" }',
        '[rule.flap]\nchanges = 6\nwithin = "10m"\nsettle = "0s"',
    )
    [(line, key, message)] = problems(make_config, table)
    assert (line, key) == (11, "rule[0].flap.settle")
    assert "positive duration" in message


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ('id = "x"\nsource = "podero.wallbox"\nif = "new.connection == \'offline\'"', "needs a `field`"),
        ('id = "x"\nsource = "podero.wallbox"\nevent = "appeared"\nfield = "connection"', "needs a `field`"),
        ('id = "x"\nsource = "podero.wallbox"\nstale_after = "6h"', "fires on silence"),
    ],
)
def test_flap_on_a_rule_without_a_field_change_to_count_is_refused(make_config, rule, says):
    text = f'[[rule]]\n{rule}\nchannels = ["ops"]\nflap = {{ changes = 2, within = "1m", settle = "1m" }}\n'
    [(line, key, message)] = problems(make_config, text)
    assert (line, key) == (1, "rule[0]")
    assert says in message


T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
SPEC = flap.FlapSpec(changes=2, within=timedelta(minutes=10), settle=timedelta(minutes=15))
KEY = ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1")


def change(prior: flap.FlapState | None, minutes: float, old: str, new: str) -> flap.FlapStep:
    at = T0 + timedelta(minutes=minutes)
    return flap.on_change(SPEC, rule_id="r", key=KEY, prior=prior, old=old, new=new, now=at)


def test_changes_older_than_the_window_no_longer_count():
    a = change(None, 0, "online", "offline").state
    b = change(a, 9, "offline", "online").state
    c = change(b, 10, "online", "offline")  # the first is 10 minutes old: out of the window
    assert not c.started
    assert [f.at for f in c.state.flips] == [T0 + timedelta(minutes=9), T0 + timedelta(minutes=10)]
    assert c.state.due_at == T0 + timedelta(minutes=20)  # forgotten when the newest leaves it
    d = change(c.state, 11, "offline", "online")
    assert d.started
    assert (d.state.since, d.state.count, d.state.first, d.state.last) == (
        T0 + timedelta(minutes=9),
        3,
        "offline",
        "online",
    )
    assert d.state.due_at == T0 + timedelta(minutes=26)


def test_each_change_while_flapping_counts_and_pushes_the_settle_time_on():
    st = change(change(change(None, 0, "a", "b").state, 1, "b", "a").state, 2, "a", "b").state
    assert st.flapping
    later = change(st, 40, "b", "c")  # long after the window: still the same spell
    assert not later.started
    assert (later.state.count, later.state.last, later.state.first) == (4, "c", "a")
    assert later.state.due_at == T0 + timedelta(minutes=55)
    assert flap.settled(later.state).forgettable
