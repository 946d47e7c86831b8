"""`/links/{token}`: the page an acknowledge or snooze link opens (#14).

Mail scanners and chat previews fetch every link they see, so a GET only shows what the link would
do, with a button; the button POSTs to the same address and that does it. The token is the whole
authorisation (signed, expiring, naming one firing: `bridge/notify/links.py`); no session is needed.
An expired, altered or spent link gets a page that says so, never a traceback.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from aiohttp import web

from bridge import errors
from bridge.app_keys import CLOCK, CONFIG, POLLER
from bridge.config.types import format_duration
from bridge.notify.links import LinkClaim, LinkError, LinkSigner
from bridge.poll.acking import AckRefused, AckRequest
from bridge.web.status import _render as render

log = structlog.get_logger(__name__)

LINKS = web.AppKey("link_signer", LinkSigner)
_NAME = re.compile(r"[^\w .@'-]+")  # what a typed-in name keeps: no markup, no control characters
_STATUS = {"malformed": 400, "tampered": 403, "expired": 410}


def setup_links(app: web.Application) -> None:
    signer = LinkSigner.from_config(app[CONFIG].server)
    if signer is not None:
        app[LINKS] = signer
    app.add_routes([web.get("/links/{token}", confirm), web.post("/links/{token}", act)])


def _claim(request: web.Request) -> LinkClaim | web.Response:
    """The verified claim of the request's link, or the page that refuses it."""
    if LINKS not in request.app:
        return _refused(404, "Links are off", "this bridge has no [server] public_url: its links do nothing")
    try:
        return request.app[LINKS].verify(request.match_info["token"], request.app[CLOCK].now())
    except LinkError as exc:
        log.info("link.refused", reason=exc.reason)  # never the token: it is a capability
        return _refused(_STATUS.get(exc.reason, 400), "This link cannot be used", str(exc))


def _refused(status: int, title: str, message: str) -> web.Response:
    return render("link.html", status=status, title=title, message=message, claim=None, done=False)


def _what(claim: LinkClaim) -> dict[str, Any]:
    length = format_duration(claim.snooze) if claim.snooze is not None else ""
    action = "Acknowledge" if claim.action == "ack" else f"Snooze for {length}"
    return {"action": action, "claim": claim}


def _state_problem(request: web.Request, claim: LinkClaim) -> str | None:
    """Whether the link's firing is still open, as the poller sees it now (the POST re-checks)."""
    st = request.app[POLLER].rule_state(claim.rule_id, claim.key)
    if st is None or st.phase != "firing" or st.firing_seq not in (None, claim.firing_seq):
        return "this firing has resolved: there is nothing left to do"
    if st.acked_at is not None:
        return f"already acknowledged by {st.acked_by} at {st.acked_at.isoformat(timespec='seconds')}"
    return None


async def confirm(request: web.Request) -> web.Response:
    claim = _claim(request)
    if isinstance(claim, web.Response):
        return claim
    problem = _state_problem(request, claim)
    if problem is not None:
        return render(
            "link.html", status=409, title="Nothing to do", message=problem, done=False, **_what(claim)
        )
    return render("link.html", title=_what(claim)["action"], message=None, done=False, **_what(claim))


async def act(request: web.Request) -> web.Response:
    claim = _claim(request)
    if isinstance(claim, web.Response):
        return claim
    form = await request.post()
    typed = _NAME.sub("", str(form.get("name", ""))).strip()[:100]
    by = typed or f"a link sent to {claim.channel or 'a channel'}"
    req = AckRequest(
        action=claim.action,
        rule_id=claim.rule_id,
        resource_id=claim.key.resource_id,
        provider=claim.key.provider,
        source=claim.key.source,
        firing_seq=claim.firing_seq,
        snooze=claim.snooze,
        by=by,
    )
    try:
        state = await request.app[POLLER].acknowledge(req)
    except AckRefused as exc:
        return render(
            "link.html", status=409, title="Nothing to do", message=exc.message, done=False, **_what(claim)
        )
    except errors.StoreError:
        return render(
            "link.html",
            status=503,
            title="Try again",
            message="the store is unavailable right now",
            done=False,
            **_what(claim),
        )
    if claim.action == "ack":
        message = f"Acknowledged by {by}: no more reminders or escalation until it resolves."
    else:
        until = state.snoozed_until.isoformat(timespec="seconds") if state.snoozed_until else ""
        message = f"Snoozed by {by} until {until}: reminders and escalation resume then."
    return render("link.html", title="Done", message=message, done=True, **_what(claim))
