"""HTTP surface of `wattbridge run`: health now; the admin API, metrics and OpenAPI later."""

from __future__ import annotations
