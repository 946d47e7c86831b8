"""One provider client per configured provider kind, each with its own ClientSession."""

from __future__ import annotations

import aiohttp

from bridge import __version__
from bridge.clock import Clock
from bridge.config.models import PoderoConfig, RealtoConfig, WattShiftConfig
from bridge.providers.base import Provider
from bridge.providers.http import Lean
from bridge.providers.podero import PoderoProvider
from bridge.providers.realto import RealtoProvider
from bridge.providers.wattshift import WattShiftProvider


def make_provider(name: str, cfg: object, clock: Clock) -> tuple[Provider, aiohttp.ClientSession]:
    """One provider client and its own ClientSession (with the provider's auth middleware)."""
    headers = {"User-Agent": f"Wattbridge/{__version__}"}
    if isinstance(cfg, PoderoConfig):
        mw = PoderoProvider.middleware(name, cfg, clock)
        session = aiohttp.ClientSession(headers=headers, middlewares=(mw,))
        # GETs (every poll) go through the lean client, authenticated by the same middleware's token.
        return PoderoProvider(name, cfg, session=session, clock=clock, lean=Lean(mw, headers)), session
    if isinstance(cfg, RealtoConfig):
        mw = RealtoProvider.middleware(name, cfg, clock)
        session = aiohttp.ClientSession(headers=headers, middlewares=(mw,))
        return RealtoProvider(name, cfg, session=session, clock=clock, lean=Lean(mw, headers)), session
    if isinstance(cfg, WattShiftConfig):
        session = aiohttp.ClientSession(headers=headers)  # API key header added per request
        return WattShiftProvider(name, cfg, session=session, clock=clock), session
    raise ValueError(f"providers.{name}: kind {getattr(cfg, 'kind', '?')!r} is not supported")
