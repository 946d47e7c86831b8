"""The running rule set, and its reload: an invalid set is refused and the last good set keeps running."""

from __future__ import annotations

from pathlib import Path

import structlog

from bridge import heap
from bridge.clock import Clock, SystemClock
from bridge.config.models import Config
from bridge.errors import RuleError
from bridge.rules.engine import RuleSet
from bridge.rules.loader import load_rules

log = structlog.get_logger(__name__)


def load_for(config: Config) -> RuleSet:
    """Load every rule file the config names, checking channels against the configured ones."""
    return load_rules(config.rules.paths, base_dir=Path(config.base_dir), channels=set(config.channels))


class RuleBook:
    """Holds the current RuleSet; `reload()` swaps it only when the new files are all valid."""

    def __init__(self, config: Config, rules: RuleSet, *, clock: Clock | None = None) -> None:
        self._config = config
        self._clock = clock or SystemClock()
        self.current = rules
        self.reloads_ok = 0
        self.reloads_failed = 0
        # For metrics: when the running set was loaded, and whether the last reload was accepted.
        self.loaded_at = self._clock.now()
        self.last_reload_ok = True

    def reload(self) -> RuleError | None:
        """Re-read the rule files. Returns the errors (and keeps the old rules) when they are invalid."""
        try:
            rules = load_for(self._config)
        except RuleError as exc:
            self.reloads_failed += 1
            self.last_reload_ok = False
            log.error(
                "rules.reload_refused", problems=[str(p) for p in exc.problems], kept=len(self.current.rules)
            )
            return exc
        self.current = rules
        heap.resettle()  # the new rule set lives until the next reload; the old one's cycles go now
        self.reloads_ok += 1
        self.loaded_at, self.last_reload_ok = self._clock.now(), True
        log.info("rules.reloaded", rules=len(rules.rules))
        return None
