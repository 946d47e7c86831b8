"""The webhook sink verifies Standard Webhooks signatures and answers as scripted; the SMTP mailbox
receives real messages sent with aiosmtplib and can refuse them as scripted."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import aiosmtplib
import pytest
from standardwebhooks import Webhook

from bridge.clock import ManualClock
from bridge.simulator.sinks import MailSink, WebhookSink

SECRET = "whsec_" + base64.b64encode(b"simulator-sink-test-secret-0123").decode()
BODY = b'{"type":"wallbox.charging_started","data":{"sequence":1}}'


def signed(body: bytes, when: datetime, *, msg_id: str = "msg_1", secret: str = SECRET) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, body.decode()),
        "content-type": "application/json",
    }


@pytest.fixture
def hook_clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def hooks(hook_clock):
    return WebhookSink(SECRET, clock=hook_clock)


@pytest.fixture
async def hook_client(aiohttp_client, hooks):
    return await aiohttp_client(hooks.app())


async def test_a_correctly_signed_webhook_is_verified_recorded_and_answered_204(
    hooks, hook_client, hook_clock
):
    resp = await hook_client.post("/hooks/partner", data=BODY, headers=signed(BODY, hook_clock.now()))
    assert resp.status == 204
    [hook] = await hooks.wait_for(1)
    assert hook.verified
    assert (hook.name, hook.webhook_id, hook.status) == ("partner", "msg_1", 204)
    assert hook.body == BODY
    assert hook.json == {"type": "wallbox.charging_started", "data": {"sequence": 1}}
    assert hook.timestamp == hook_clock.now()
    assert hook.received_at == hook_clock.now()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: {**h, "webhook-signature": "v1,AAAA"}, id="wrong-signature"),
        pytest.param(lambda h: {**h, "webhook-signature": "garbage"}, id="garbled-signature"),
        pytest.param(lambda h: {**h, "webhook-id": "msg_2"}, id="other-id"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "webhook-timestamp"}, id="no-timestamp"),
    ],
)
async def test_a_bad_signature_is_rejected_with_400_and_not_counted(hooks, hook_client, hook_clock, tamper):
    resp = await hook_client.post("/hooks/partner", data=BODY, headers=tamper(signed(BODY, hook_clock.now())))
    assert resp.status == 400
    [hook] = hooks.received
    assert not hook.verified
    assert hooks.verified == []


async def test_another_secret_does_not_verify(hooks, hook_client, hook_clock):
    other = "whsec_" + base64.b64encode(b"another-secret-entirely-456789").decode()
    resp = await hook_client.post("/hooks/x", data=BODY, headers=signed(BODY, hook_clock.now(), secret=other))
    assert resp.status == 400


async def test_a_timestamp_outside_the_window_of_the_sinks_clock_is_rejected(hooks, hook_client, hook_clock):
    stale = hook_clock.now() - timedelta(minutes=6)
    assert (await hook_client.post("/hooks/p", data=BODY, headers=signed(BODY, stale))).status == 400
    recent = hook_clock.now() - timedelta(minutes=4)
    assert (await hook_client.post("/hooks/p", data=BODY, headers=signed(BODY, recent))).status == 204


async def test_without_a_clock_the_library_verifies_against_the_wall_clock(aiohttp_client):
    sink = WebhookSink(SECRET)
    client = await aiohttp_client(sink.app())
    now = datetime.now(UTC)
    assert (await client.post("/hooks/p", data=BODY, headers=signed(BODY, now))).status == 204
    long_ago = now - timedelta(hours=2)
    assert (await client.post("/hooks/p", data=BODY, headers=signed(BODY, long_ago))).status == 400
    assert [h.verified for h in sink.received] == [True, False]


async def test_scripted_statuses_answer_genuine_deliveries_in_order(hooks, hook_client, hook_clock):
    hooks.respond_with(500, 503)
    hooks.respond_with(429, headers={"Retry-After": "7"})
    answers = []
    for _ in range(4):
        resp = await hook_client.post("/hooks/p", data=BODY, headers=signed(BODY, hook_clock.now()))
        answers.append((resp.status, resp.headers.get("Retry-After")))
    assert answers == [(500, None), (503, None), (429, "7"), (204, None)]
    assert [h.status for h in hooks.received] == [500, 503, 429, 204]
    assert len(await hooks.wait_for(4)) == 4  # every genuine request counts, whatever it was answered


async def test_wait_for_wakes_when_the_webhook_arrives_and_times_out_otherwise(
    hooks, hook_client, hook_clock
):
    waiter = asyncio.create_task(hooks.wait_for(1, timeout=5.0))
    await asyncio.sleep(0)
    assert not waiter.done()
    await hook_client.post("/hooks/p", data=BODY, headers=signed(BODY, hook_clock.now()))
    assert len(await waiter) == 1
    with pytest.raises(TimeoutError):
        await hooks.wait_for(2, timeout=0.05)


# ------------------------------------------------------------------------------------------ SMTP


@pytest.fixture
async def box():
    sink = MailSink()
    await sink.start()
    yield sink
    await sink.stop()


def message(subject: str = "Wallbox needs action") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "wattbridge@example.com"
    msg["To"] = "ops@example.com"
    msg["Subject"] = subject
    msg.set_content("Pending actions: reauthenticate\n")
    return msg


async def test_the_mailbox_receives_a_message_with_its_envelope(box):
    await aiosmtplib.send(
        message(), hostname="127.0.0.1", port=box.port, recipients=["ops@example.com", "oncall@example.com"]
    )
    [received] = await box.wait_for(1)
    assert received["Subject"] == "Wallbox needs action"
    assert received.get_content() == "Pending actions: reauthenticate\n"
    assert box.received[0].mail_from == "wattbridge@example.com"
    assert box.received[0].rcpt_tos == ["ops@example.com", "oncall@example.com"]
    assert received["X-RcptTo"] == "ops@example.com, oncall@example.com"


async def test_a_scripted_451_refuses_the_message_and_the_next_one_is_accepted(box):
    box.reply_with("451 4.3.0 Try later")
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await aiosmtplib.send(message("first"), hostname="127.0.0.1", port=box.port)
    assert info.value.code == 451
    assert (box.rejected, box.messages) == (1, [])
    await aiosmtplib.send(message("second"), hostname="127.0.0.1", port=box.port)
    [accepted] = await box.wait_for(1)
    assert accepted["Subject"] == "second"


async def test_waiting_for_mail_that_never_comes_times_out(box):
    with pytest.raises(TimeoutError):
        await box.wait_for(1, timeout=0.05)


async def test_stopping_the_mailbox_closes_an_idle_client_connection(box):
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=box.port)
    await smtp.connect()
    await box.stop()
    with pytest.raises(aiosmtplib.SMTPServerDisconnected):
        await smtp.noop()
    smtp.close()
