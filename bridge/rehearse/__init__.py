"""Rehearsal harness: the whole pipeline replayed offline for `wattbridge rules test`.
Receives: two states or a JSONL timeline and a rule set. Hands on: a report of what would fire and
the rendered notifications, writing and sending nothing. It sits above every stage it drives."""

from __future__ import annotations
