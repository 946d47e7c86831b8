"""MQTT channel: the SPEC §6 envelope published to a topic rendered per event (aiomqtt, QoS 1).

Topic, payload and retain flag are rendered once and stored in the outbox, so every retry publishes
the same message to the same topic. One connection per channel, opened on the first send and
reopened after it breaks. Outcomes map onto the outbox like SMTP's: a broker that is down, slow or
refusing our credentials is retried (the breaker pauses the channel); a message no broker can take
(a topic with wildcards, a stored body that is not ours) is a dead letter at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from typing import Any

import aiohttp
import aiomqtt
import orjson
import structlog
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

from bridge.channels.base import RenderContext, SendResult
from bridge.channels.webhook import envelope
from bridge.clock import Clock
from bridge.config.models import DEFAULT_MQTT_TOPIC, Config, MqttChannelConfig
from bridge.config.models import ChannelConfig as AnyChannelConfig
from bridge.model import Delivery, Event
from bridge.notify.render import template_context
from bridge.rules.templates import ENV

log = structlog.get_logger(__name__)

MAX_TOPIC_BYTES = 65535  # MQTT's UTF-8 string limit
# CONNACK refusals about our session, not the message (MQTT 3.1.1 codes 4/5, MQTT 5 reason codes
# 134/135): an operator fixes username/password or the broker's ACL; the message stays pending.
SESSION_REFUSALS = frozenset({4, 5, 134, 135})


def safe_topic(topic: str, *, fallback: str) -> str:
    """A topic one may publish to: wildcards and NUL replaced (a resource id may hold `+` or `#`)."""
    clean = topic.strip().replace("+", "_").replace("#", "_").replace("\x00", "_")
    if not clean or len(clean.encode()) > MAX_TOPIC_BYTES:
        return fallback
    return clean


class MqttChannel:
    """Publishes each notification to one broker; the connection is kept and reopened when it breaks."""

    kind: str = "mqtt"

    def __init__(self, name: str, cfg: MqttChannelConfig, *, clock: Clock) -> None:
        self.name = name
        self._cfg = cfg
        self._clock = clock
        self._topic = ENV.from_string(cfg.topic)
        self._default_topic = ENV.from_string(DEFAULT_MQTT_TOPIC)
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()

    @classmethod
    def from_config(
        cls,
        name: str,
        cfg: AnyChannelConfig,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> MqttChannel:
        if not isinstance(cfg, MqttChannelConfig):
            raise TypeError(f"channels.{name}: expected an mqtt channel config, got kind {cfg.kind!r}")
        return cls(name, cfg, clock=clock)

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        context = template_context(event, ctx.old)
        fallback = self._default_topic.render(**context)
        topic = ctx.mqtt_topic
        if topic is None:
            try:
                topic = self._topic.render(**context)
            except Exception as exc:  # the notification still goes out, to the default topic
                log.warning("mqtt.topic_failed", channel=self.name, error=str(exc))
                topic = fallback
        stored = {
            "topic": safe_topic(topic, fallback=safe_topic(fallback, fallback="wattbridge")),
            "retain": self._cfg.retain,
            "payload": orjson.dumps(envelope(event, ctx)).decode(),
        }
        return orjson.dumps(stored)

    async def send(self, delivery: Delivery) -> SendResult:
        started = time.perf_counter()
        try:
            topic, payload, retain = _stored(delivery.body)
        except ValueError as exc:
            return SendResult(ok=False, permanent=True, error=str(exc))
        timeout = self._cfg.timeout.total_seconds()
        fresh = True
        try:
            try:
                client, fresh = await self._connection()
                await client.publish(topic, payload, qos=self._cfg.qos, retain=retain, timeout=timeout)
            except aiomqtt.MqttCodeError:
                if fresh:
                    raise
                # The kept connection broke since the last send (broker restart, idle drop):
                # reconnect once within this attempt rather than spend a retry on it.
                await self._drop()
                client, _ = await self._connection()
                await client.publish(topic, payload, qos=self._cfg.qos, retain=retain, timeout=timeout)
        except ValueError as exc:  # paho refuses the topic itself: no broker will ever take it
            return SendResult(ok=False, permanent=True, error=f"MQTT: {exc}", latency_ms=_ms(started))
        except MqttConnectError as exc:
            await self._drop()
            refused = _code(exc.rc) in SESSION_REFUSALS
            hint = ": the broker refused the session; check username/password and its ACL"
            return SendResult(
                ok=False,
                error=f"MQTT connect refused: {exc}{hint if refused else ''}",
                latency_ms=_ms(started),
            )
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            # Down, unreachable, slow or dropped mid-publish: the broker may be back later.
            await self._drop()
            return SendResult(ok=False, error=f"MQTT: {type(exc).__name__}: {exc}", latency_ms=_ms(started))
        except Exception as exc:  # never raise: the outbox must record and retry whatever happened
            log.exception("mqtt.unexpected_error", channel=self.name, delivery_id=delivery.id)
            await self._drop()
            return SendResult(
                ok=False, error=f"unexpected error: {type(exc).__name__}", latency_ms=_ms(started)
            )
        return SendResult(
            ok=True,
            latency_ms=_ms(started),
            response_excerpt=f"published to {topic} (qos {self._cfg.qos}{', retained' if retain else ''})",
        )

    async def _connection(self) -> tuple[aiomqtt.Client, bool]:
        """The open client, and whether it was opened just now."""
        async with self._lock:
            if self._client is not None:
                return self._client, False
            cfg = self._cfg
            # Built per connection, not at start-up: a missing or unreadable ca_file / cert_file is
            # an OSError here, so an attempt that is retried and says why, not a crash at start.
            tls = _tls_context(cfg) if cfg.tls else None
            client = aiomqtt.Client(
                cfg.host,
                cfg.port,
                username=cfg.username,
                password=cfg.password.get_secret_value() if cfg.password is not None else None,
                identifier=cfg.client_id,
                tls_context=tls,
                timeout=cfg.timeout.total_seconds(),
                keepalive=cfg.keepalive,
            )
            # The outbox keeps up to [server] delivery_concurrency sends in flight (at most 1024);
            # aiomqtt would warn on stderr about every publish beyond 10 awaiting its PUBACK.
            client.pending_calls_threshold = 1024
            await client.__aenter__()
            self._client = client
            return client, True

    async def _drop(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError, TimeoutError):
                await client.__aexit__(None, None, None)

    async def close(self) -> None:
        """Disconnect cleanly (the broker would otherwise log an unexpected drop)."""
        await self._drop()


def _stored(body: bytes) -> tuple[str, bytes, bool]:
    try:
        stored: dict[str, Any] = orjson.loads(body)
        return str(stored["topic"]), str(stored["payload"]).encode(), bool(stored["retain"])
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"stored mqtt body is malformed: {type(exc).__name__}") from exc


def _tls_context(cfg: MqttChannelConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=cfg.ca_file)
    if cfg.cert_file is not None:
        context.load_cert_chain(cfg.cert_file, cfg.key_file)
    return context


def _code(rc: int | ReasonCode | None) -> int | None:
    return rc.value if isinstance(rc, ReasonCode) else rc


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
