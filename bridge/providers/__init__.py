"""Polling stage: provider clients that fetch resources and validate them into Observations."""

from __future__ import annotations
