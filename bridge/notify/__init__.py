"""The notify stage: the rule book, silences, batched digests and rendering of fired rules.
Receives: rule firings (`rules.engine`) for one resource. Hands on: events and per-channel outbox
deliveries (rendered bodies) for the poll stage to commit."""

from __future__ import annotations
