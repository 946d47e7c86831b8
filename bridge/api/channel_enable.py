"""`POST /api/channels/{name}/enable`: re-enable a channel that a 410 Gone disabled (#18).

A 410 disables a channel so that a receiver which said "gone for good" is not hammered; a replay to
it is refused (409) until the operator says the receiver is fixed, here, on the status page or with
`wattbridge channels enable` (a restart keeps it disabled, #14). Then
`POST /api/deliveries/{id}/replay` (or `wattbridge deliveries replay`) delivers.
"""

from __future__ import annotations

from aiohttp import web

from bridge.api.json_errors import ApiError
from bridge.api.models import ChannelEnabled, ChannelPath
from bridge.api.registry import ApiRoutes
from bridge.app_keys import DELIVERY

routes = ApiRoutes()


@routes.post(
    "/api/channels/{name}/enable",
    summary="Re-enable a channel that a 410 Gone disabled (then replay its dead deliveries)",
    tag="deliveries",
    errors=(404,),
)
async def enable_channel(request: web.Request, path: ChannelPath) -> ChannelEnabled:
    worker = request.app[DELIVERY]
    if path.name not in worker.channel_names:
        known = ", ".join(sorted(worker.channel_names)) or "none"
        raise ApiError(404, "no such channel", f"no channel {path.name!r} (known: {known})")
    was = await worker.enable_channel(path.name, by="api")
    detail = (
        f"channel {path.name!r} is enabled again; replay its dead deliveries now, e.g. "
        f"wattbridge deliveries replay -c CONFIG --channel {path.name} --since 1d"
        if was
        else f"channel {path.name!r} was not disabled; nothing changed"
    )
    return ChannelEnabled(
        channel=path.name,
        status=str(worker.channel_state(path.name)["status"]),
        was_disabled=was,
        detail=detail,
    )
