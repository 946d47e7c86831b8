"""Reloading rules: a valid set replaces the running one, an invalid one is refused and the last good
set keeps running (SPEC §8 "bad rules never take a running bridge down")."""

from __future__ import annotations

from pathlib import Path

import structlog
from structlog.testing import LogCapture

from bridge.app_keys import RULEBOOK
from bridge.notify import rulebook

ONE = """
[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
to = true
channels = ["partner"]
"""


def rule_file(config) -> Path:
    return Path(config.rules.paths[0]).parent / "test.toml"


async def test_a_valid_reload_replaces_the_rules(make_config, make_bridge):
    config = make_config(rules=ONE)
    bridge = await make_bridge(config)
    book = bridge.app[RULEBOOK]
    rule_file(config).write_text(ONE + ONE.replace("charging-started", "charging-again"))

    assert book.reload() is None

    assert [r.id for r in book.current.rules] == ["charging-started", "charging-again"]
    assert (book.reloads_ok, book.reloads_failed) == (1, 0)


async def test_an_invalid_reload_is_refused_with_every_problem_and_the_old_rules_keep_running(
    make_config, make_bridge, monkeypatch
):
    logs = LogCapture()  # the module's logger, replaced: a configured structlog caches loggers
    monkeypatch.setattr(rulebook, "log", structlog.wrap_logger(None, processors=[logs]))
    config = make_config(rules=ONE)
    bridge = await make_bridge(config)
    book = bridge.app[RULEBOOK]
    running = book.current
    rule_file(config).write_text(ONE.replace("is_charging", "is_chargng").replace('"partner"', '"pager"'))

    error = book.reload()

    assert error is not None
    assert len(error.problems) == 2
    assert book.current is running
    assert (book.reloads_ok, book.reloads_failed) == (0, 1)
    [refused] = [e for e in logs.entries if e["event"] == "rules.reload_refused"]
    assert refused["kept"] == 1
    assert any("did you mean 'is_charging'" in p for p in refused["problems"])
