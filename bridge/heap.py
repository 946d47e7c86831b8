"""The cyclic garbage collector, kept off the hot path: what lives as long as the process is frozen.

A full collection walks every tracked object; once started, that is the whole app (modules, pydantic
models, rule templates, aiohttp): hundreds of thousands of objects, walked now and then in the
middle of a poll or a send, tens of milliseconds on the one event loop. `gc.freeze()` after start-up
moves the survivors out of the collector's sight; young objects are collected as before. Measured
(bench/latency.py at 1,000 events/s, 20 per poll, FULL): p99 29-36 ms before, 15-17 ms after.
"""

from __future__ import annotations

import gc

_settled = False  # `wattbridge run` settles its heap once started; tests and tools do not


def settle() -> None:
    """Collect, then freeze what survived (once the bridge has started: `serve`)."""
    global _settled
    _settled = True
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def resettle() -> None:
    """After a rule reload, in a process that settles: unfreeze and settle again, so the replaced
    rule set's garbage cycles are collected instead of kept frozen."""
    if _settled:
        settle()


def release() -> None:
    """Give frozen objects back to the collector (the bridge is stopping)."""
    global _settled
    _settled = False
    gc.unfreeze()
