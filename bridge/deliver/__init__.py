"""The delivery stage: the outbox worker, its retry policy and per-channel circuit breaker.
Receives: due deliveries claimed from the store's outbox. Hands on: one attempt per send to a
`channels/` plugin, recorded back in the store (delivered, retried later, or dead)."""

from __future__ import annotations
