"""The status page: server-rendered HTML for ops, behind the `[server] admin_token`."""

from __future__ import annotations
