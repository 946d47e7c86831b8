"""Wattbridge: turns polled energy-device partner APIs into signed webhooks and emails."""

from __future__ import annotations

__version__ = "0.1.0"
