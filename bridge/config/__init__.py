"""The config file: pydantic models (`models`), TOML loading with `${ENV}` (`loader`) and the
FILE:LINE positions of keys (`tomlpos`). Receives: a path. Hands on: a validated `Config`, or
every problem at once as `FILE:LINE: key: message`."""

from __future__ import annotations
