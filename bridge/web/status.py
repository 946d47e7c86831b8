"""`/` (the status page), `/login`, `/logout`, `/replay` and `/channels/enable`: HTML for ops, behind
`[server] admin_token`.

Without a token the page says it is disabled: it is never open. Every form posts a CSRF token derived
from the session; the session cookie is HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import jinja2
import structlog
from aiohttp import web

from bridge import __version__, errors
from bridge.app_keys import CLOCK, CONFIG, DELIVERY, STORE
from bridge.deliver.replay import replay as replay_deliveries_by_id
from bridge.web.session import SESSION_TTL, Sessions
from bridge.web.view import build_view

log = structlog.get_logger(__name__)

COOKIE = "wattbridge_session"
SESSIONS = web.AppKey("status_sessions", Sessions)
# Only what a delivery id looks like goes back into a notice on the page.
_DELIVERY_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")  # a channel name, as it may go back into a notice
# No script at all; the inline <style> is the only thing allowed beyond the page itself.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("bridge.web", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    seconds = int((now - when).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 60:
        text = f"{seconds}s"
    elif seconds < 3600:
        text = f"{seconds // 60}m"
    elif seconds < 86400:
        text = f"{seconds // 3600}h {seconds % 3600 // 60}m"
    else:
        text = f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    return f"in {text}" if future else f"{text} ago"


def _utc(when: datetime | None) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%SZ") if when is not None else ""


# Rules say info, warning or critical; `error` is read as critical. Anything else is shown as info: a
# severity the page does not know should not look like an alarm.
_SEVERITY_CLASSES = {"critical": "sev-critical", "error": "sev-critical", "warning": "sev-warning"}


def _severity_class(severity: str) -> str:
    return _SEVERITY_CLASSES.get(severity, "sev-info")


_env.filters["ago"] = _ago
_env.filters["severity_class"] = _severity_class
_env.filters["utc"] = _utc


def setup_status_page(app: web.Application) -> None:
    """Add the status page's routes; it is enabled only when `[server] admin_token` is set."""
    token = app[CONFIG].server.admin_token
    if token is not None and token.get_secret_value():
        app[SESSIONS] = Sessions(token.get_secret_value())
    app.add_routes(
        [
            web.get("/", status_page),
            web.get("/login", login_form),
            web.post("/login", login),
            web.post("/logout", logout),
            web.post("/replay", replay),
            web.post("/channels/enable", enable_channel),
        ]
    )


def _render(template: str, *, status: int = 200, **context: Any) -> web.Response:
    body = _env.get_template(template).render(version=__version__, **context)
    return web.Response(text=body, status=status, content_type="text/html", headers=_HEADERS)


def _disabled() -> web.Response:
    return _render("disabled.html", status=503)


def _see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location, headers={"Cache-Control": "no-store"})


def _session(request: web.Request) -> str | None:
    """The request's session value when it is valid now, else None."""
    sessions = request.app[SESSIONS]
    value = request.cookies.get(COOKIE)
    return value if value and sessions.valid(value, request.app[CLOCK].now()) else None


async def status_page(request: web.Request) -> web.Response:
    if SESSIONS not in request.app:
        return _disabled()
    session = _session(request)
    if session is None:
        raise _see_other("/login")
    notice_id = request.query.get("id", "")
    channel = request.query.get("channel", "")
    notice = request.query.get("notice")
    if notice in ("channel_enabled", "channel_not_disabled"):
        notice = notice if _NAME.match(channel) else None
    elif not _DELIVERY_ID.match(notice_id) or (notice == "channel_disabled" and not _NAME.match(channel)):
        notice = None
    return _render(
        "status.html",
        view=await build_view(request.app),
        csrf=request.app[SESSIONS].csrf(session),
        notice=notice,
        notice_id=notice_id,
        notice_channel=channel,
    )


async def login_form(request: web.Request) -> web.Response:
    if SESSIONS not in request.app:
        return _disabled()
    if _session(request) is not None:
        raise _see_other("/")
    return _render("login.html", error=None)


async def login(request: web.Request) -> web.Response:
    if SESSIONS not in request.app:
        return _disabled()
    form = await request.post()
    given = form.get("token")
    sessions = request.app[SESSIONS]
    if not isinstance(given, str) or not sessions.token_matches(given):
        log.warning("status_page.login_failed", remote=request.remote)
        return _render("login.html", status=401, error="That token is not the admin token.")
    log.info("status_page.login", remote=request.remote)
    response = _see_other("/")
    response.set_cookie(
        COOKIE,
        sessions.issue(request.app[CLOCK].now()),
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=_https(request),
    )
    raise response


def _https(request: web.Request) -> bool:
    """Served over https, directly or by a proxy saying so. Trusting the header cannot weaken anything:
    it only ever adds the Secure flag."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def logout(request: web.Request) -> web.Response:
    if SESSIONS not in request.app:
        return _disabled()
    session = await _checked_post(request)
    request.app[SESSIONS].revoke(session, request.app[CLOCK].now())
    response = _see_other("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def replay(request: web.Request) -> web.Response:
    """Send a dead (or delivered) delivery again, exactly like `wattbridge deliveries replay` (one
    implementation, bridge/deliver/replay.py): the same id (webhook-id) and body, pending again with a
    fresh retry schedule; the worker is woken. A disabled channel's delivery is refused with how to
    re-enable it."""
    if SESSIONS not in request.app:
        return _disabled()
    await _checked_post(request)
    form = await request.post()
    delivery_id = form.get("delivery_id")
    if not isinstance(delivery_id, str) or not _DELIVERY_ID.match(delivery_id):
        return _render("error.html", status=400, message="The form named no delivery to replay.")
    app = request.app
    worker = app[DELIVERY]
    try:
        replayed = await replay_deliveries_by_id(
            app[STORE], [delivery_id], app[CLOCK].now(), disabled=worker.disabled_channels(), by="status_page"
        )
    except errors.ReplayRefused as exc:
        log.info("status_page.replay", delivery_id=delivery_id, replayed=0, reason=exc.reason)
        if exc.reason == "channel_disabled" and exc.channel is not None and _NAME.match(exc.channel):
            where = urlencode({"notice": "channel_disabled", "id": delivery_id, "channel": exc.channel})
            raise _see_other(f"/?{where}") from exc
        raise _see_other(f"/?notice=not_replayed&id={delivery_id}") from exc
    if replayed:
        worker.notify()
    log.info("status_page.replay", delivery_id=delivery_id, replayed=replayed)
    raise _see_other(f"/?notice={'replayed' if replayed else 'not_replayed'}&id={delivery_id}")


async def enable_channel(request: web.Request) -> web.Response:
    """Re-enable a channel a 410 disabled (the operator says the receiver is fixed), like
    `POST /api/channels/{name}/enable`; its dead deliveries can then be replayed."""
    if SESSIONS not in request.app:
        return _disabled()
    await _checked_post(request)
    form = await request.post()
    name = form.get("channel")
    worker = request.app[DELIVERY]
    if not isinstance(name, str) or name not in worker.channel_names:
        return _render("error.html", status=400, message="The form named no configured channel.")
    was = await worker.enable_channel(name, by="status_page")
    notice = "channel_enabled" if was else "channel_not_disabled"
    raise _see_other("/?" + urlencode({"notice": notice, "channel": name}))


async def _checked_post(request: web.Request) -> str:
    """The session of a state-changing POST whose CSRF token matches; otherwise an error response."""
    session = _session(request)
    if session is None:
        raise _see_other("/login")
    form = await request.post()
    given = form.get("csrf")
    if not isinstance(given, str) or not request.app[SESSIONS].csrf_matches(session, given):
        log.warning("status_page.csrf_refused", remote=request.remote, path=request.path)
        raise web.HTTPForbidden(
            text=_env.get_template("error.html").render(
                version=__version__, message="The form's CSRF token is missing or stale: reload the page."
            ),
            content_type="text/html",
            headers=_HEADERS,
        )
    return session
