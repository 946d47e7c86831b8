"""Delivery stage: channels that send one rendered notification (webhook, email)."""

from __future__ import annotations
