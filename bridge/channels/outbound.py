"""Where channels may send: private, loopback, link-local and metadata ranges are refused (issue #15).

A webhook URL is partner-supplied text; without a guard, a config (or a DNS answer) could point the
bridge at `169.254.169.254`, a database on `10.x`, or its own admin port, and the bridge would sign
and POST to it (SSRF). An address is refused unless it is globally routable, or an `[outbound] allow`
network contains it. Checked twice: at config load for literal IPs and `localhost` (no network), and
at send time after DNS resolution, by the resolver of the channels' HTTP session, so the address
checked is the address connected to (a name that resolves to a private address, or starts to, is
refused; DNS rebinding gains nothing).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

log = structlog.get_logger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# Named for the error message; `not is_global` is the test (it covers every IANA special range).
_NAMED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network'"),
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("169.254.0.0/16", "link-local (cloud metadata)"),
    ("fe80::/10", "link-local"),
    ("fc00::/7", "unique-local (private)"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT)"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
)
NAMED_RANGES = tuple((ipaddress.ip_network(net), what) for net, what in _NAMED)


class OutboundRefused(OSError):
    """A channel target resolves only to addresses outside the allowed ones."""


class OutboundGuard:
    """Decides whether an address may be sent to; `allow` networks override the refusal."""

    def __init__(self, allow: Sequence[IPNetwork] = ()) -> None:
        self.allow = tuple(allow)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why `ip` is refused (None: it may be sent to)."""
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
        if any(ip in net for net in self.allow):
            return None
        if ip.is_global and not ip.is_multicast:
            return None
        what = next((w for net, w in NAMED_RANGES if ip in net), "reserved (not globally routable)")
        return f"{ip} is {what}"

    def url_problem(self, url: str, *, localhost: bool = True) -> str | None:
        """A refused literal-IP host (and `localhost`, unless told not to: it resolves to loopback
        everywhere); other names are checked at send time, after resolution."""
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
        if localhost and (host == "localhost" or host.endswith(".localhost")):
            ips: list[IPAddress] = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
        else:
            try:
                ips = [ipaddress.ip_address(host)]
            except ValueError:
                return None
        reasons = [r for r in (self.refusal(ip) for ip in ips) if r is not None]
        if len(reasons) < len(ips):
            return None
        return (
            f'{reasons[0]}: refused unless [outbound] allow lists it (e.g. allow = ["{_network_of(ips[0])}"])'
        )


def _network_of(ip: IPAddress) -> str:
    return "127.0.0.0/8" if ip.is_loopback and ip.version == 4 else str(ipaddress.ip_network(ip))


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default and drops refused addresses; none left is OutboundRefused."""

    def __init__(self, guard: OutboundGuard, inner: AbstractResolver | None = None) -> None:
        self._guard = guard
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        kept: list[ResolveResult] = []
        refused: list[str] = []
        for result in results:
            reason = self._guard.refusal(ipaddress.ip_address(result["host"].split("%", 1)[0]))
            if reason is None:
                kept.append(result)
            else:
                refused.append(reason)
        if not kept:
            log.warning("outbound.refused", host=host, reasons=refused)
            raise OutboundRefused(
                f"{host} resolves to {'; '.join(refused)}: refused unless [outbound] allow lists it"
            )
        return kept

    async def close(self) -> None:
        await self._inner.close()
