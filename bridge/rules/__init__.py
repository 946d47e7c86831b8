"""Rules stage: TOML rule files → typed, indexed rules that turn changes into firings."""

from __future__ import annotations
