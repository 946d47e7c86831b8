"""`wattbridge run` keeps its start-up objects out of the cyclic collector's full passes (a full pass
over them stalled the event loop for tens of ms); a rule reload lets go of what became garbage."""

from __future__ import annotations

import gc
import weakref

from bridge import heap
from bridge.app_keys import RULEBOOK

RULE = """
[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
to = true
channels = ["partner"]
"""


class Cycle:
    """An object only a reference cycle keeps alive: freed by the cyclic collector, never by counts."""

    def __init__(self) -> None:
        self.me = self


def frozen_garbage() -> weakref.ref[Cycle]:
    """A cycle frozen while alive (as start-up objects are), then dropped."""
    cycle = Cycle()
    gc.freeze()
    return weakref.ref(cycle)


def test_frozen_garbage_survives_full_collections_until_the_heap_is_settled_again():
    dropped = frozen_garbage()
    gc.collect()
    assert dropped() is not None  # full collections skip frozen objects

    heap.settle()

    assert dropped() is None
    assert gc.get_freeze_count() > 0  # what is still alive is frozen again
    heap.release()


async def test_a_rule_reload_settles_the_heap_again_in_a_running_bridge(make_config, make_bridge):
    bridge = await make_bridge(make_config(rules=RULE))
    heap.settle()  # as `wattbridge run` does once started
    dropped = frozen_garbage()  # e.g. a cycle in the rule set being replaced

    assert bridge.app[RULEBOOK].reload() is None

    assert dropped() is None
    heap.release()


async def test_outside_a_running_bridge_a_reload_leaves_the_collector_alone(make_config, make_bridge):
    bridge = await make_bridge(make_config(rules=RULE))
    dropped = frozen_garbage()

    assert bridge.app[RULEBOOK].reload() is None

    assert dropped() is not None  # tests and tools pay no full collection per reload
    gc.unfreeze()
