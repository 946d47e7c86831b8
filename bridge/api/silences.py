"""`/api/silences`: create, list, read and expire silences, validated exactly as the CLI does."""

from __future__ import annotations

import structlog
from aiohttp import web

from bridge.api.json_errors import ApiError
from bridge.api.models import IdPath, SilenceCreate, SilenceList, SilenceListQuery, SilenceOut
from bridge.api.registry import ApiRoutes
from bridge.app_keys import CLOCK, STORE
from bridge.model import Silence
from bridge.notify.silences import SilenceError, new_silence

log = structlog.get_logger(__name__)
routes = ApiRoutes()


def silence_out(s: Silence, now_active: bool) -> SilenceOut:
    return SilenceOut(
        id=s.id,
        rule=s.rule,
        source=s.source,
        resource=s.resource,
        starts_at=s.starts_at,
        ends_at=s.ends_at,
        comment=s.comment,
        created_by=s.created_by,
        created_at=s.created_at,
        active=now_active,
    )


@routes.get(
    "/api/silences", summary="List silences (current and future; all with include_expired)", tag="silences"
)
async def list_silences(request: web.Request, query: SilenceListQuery) -> SilenceList:
    now = request.app[CLOCK].now()
    found = await request.app[STORE].list_silences(active_after=None if query.include_expired else now)
    return SilenceList(items=[silence_out(s, s.active(now)) for s in found])


@routes.post("/api/silences", summary="Create a silence", tag="silences", status=201)
async def create_silence(request: web.Request, body: SilenceCreate) -> SilenceOut:
    now = request.app[CLOCK].now()
    try:
        silence = new_silence(
            now=now,
            rule=body.rule,
            source=body.source,
            resource=body.resource,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            duration=body.duration,
            comment=body.comment,
            created_by=body.created_by,
        )
    except SilenceError as exc:
        raise ApiError(422, "invalid silence", str(exc)) from exc
    except OverflowError as exc:  # a start plus a duration past year 9999
        raise ApiError(422, "invalid silence", "the silence would end after year 9999") from exc
    await request.app[STORE].add_silence(silence)
    log.info(
        "silence.created", silence_id=silence.id, ends_at=silence.ends_at.isoformat(), by=silence.created_by
    )
    return silence_out(silence, silence.active(now))


@routes.get("/api/silences/{id}", summary="One silence", tag="silences", errors=(404,))
async def get_silence(request: web.Request, path: IdPath) -> SilenceOut:
    silence = await request.app[STORE].get_silence(path.id)
    if silence is None:
        raise ApiError(404, "no such silence", f"no silence {path.id!r}")
    return silence_out(silence, silence.active(request.app[CLOCK].now()))


@routes.delete(
    "/api/silences/{id}",
    summary="Expire a silence now (it stays listed as ended)",
    tag="silences",
    errors=(404, 409),
)
async def expire_silence(request: web.Request, path: IdPath) -> SilenceOut:
    store, now = request.app[STORE], request.app[CLOCK].now()
    if await store.get_silence(path.id) is None:
        raise ApiError(404, "no such silence", f"no silence {path.id!r}")
    if not await store.expire_silence(path.id, now):
        raise ApiError(409, "already ended", f"silence {path.id!r} has already ended")
    log.info("silence.expired", silence_id=path.id)
    silence = await store.get_silence(path.id)
    if silence is None:  # deleted in between: there is nothing left to show
        raise ApiError(404, "no such silence", f"no silence {path.id!r}")
    return silence_out(silence, silence.active(now))
