"""The `wattbridge` command line, one module per command group (`main` parses and dispatches).
Receives: argv. Hands on: a config to `serve` (run, demo), or a single store/API use case (check,
rules, deliveries, silences, channels test); exit codes 0 ok, 1 invalid input, 2 runtime failure."""

from __future__ import annotations
