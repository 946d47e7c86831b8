"""Persistence stage: snapshots, events and the delivery outbox."""

from __future__ import annotations
