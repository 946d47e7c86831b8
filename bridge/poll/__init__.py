"""The poll stage: the timetable wakes a watch group, its provider is read, and each result is diffed
and evaluated. Receives: the config's providers and watches. Hands on: one `PollResult` per resource
(snapshot, events, deliveries) to the store's single commit, and rule-timer ticks."""

from __future__ import annotations
