"""Typed keys of the aiohttp application: one per component the app owns."""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.config.models import Config
from bridge.deliver.worker import DeliveryWorker
from bridge.lifecycle import Service
from bridge.metrics import Metrics
from bridge.notify.batches import Digester
from bridge.notify.rulebook import RuleBook
from bridge.poll.cycle import Poller
from bridge.poll.fetch_pool import FetchPool
from bridge.poll.health import HealthBoard
from bridge.poll.ownership import PollOwnership
from bridge.poll.scheduler import PollScheduler
from bridge.providers.base import Provider
from bridge.store.base import Store

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
RULEBOOK = web.AppKey("rulebook", RuleBook)
HEALTH = web.AppKey("health", HealthBoard)
STORE = web.AppKey("store", Store)
PROVIDERS = web.AppKey("providers", dict[str, Provider])
FETCH_POOLS = web.AppKey("fetch_pools", dict[str, FetchPool])
CHANNELS = web.AppKey("channels", dict[str, Channel])
DELIVERY = web.AppKey("delivery", DeliveryWorker)
DELIVERY_SERVICE = web.AppKey("delivery_service", Service)
POLLER = web.AppKey("poller", Poller)
DIGESTER = web.AppKey("digester", Digester)
SCHEDULER = web.AppKey("scheduler", PollScheduler)
OWNERSHIP = web.AppKey("ownership", PollOwnership)
METRICS = web.AppKey("metrics", Metrics)


class CrashHandler(Protocol):
    def __call__(self, name: str, exc: BaseException, /) -> None: ...


ON_CRASH = web.AppKey("on_crash", CrashHandler)
# Whether the poller hands fresh deliveries to the sender in memory (bridge/deliver/handoff.py).
HAND_OVER = web.AppKey("hand_over", bool)
