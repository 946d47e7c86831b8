"""Delivery stage: channels that send one rendered notification (webhook, email, mqtt, apprise,
alertmanager)."""

from __future__ import annotations
