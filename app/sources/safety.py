"""Where the catalog's outbound HTTP may go: public addresses, plus the private networks an operator admits.

Vendor URLs are typed in by admins and vendors write their own pagination links, redirects and image URLs, so every
one of them is an attacker-chosen URL as far as this process is concerned (blind SSRF: OWASP API7:2023). The rules:

- only ``http``/``https``, with a host and no user info (credentials go in ``credentials``, never in a URL);
- the address connected to must be public (``ipaddress``' ``is_global``), unless it is inside a network of the
  allow-list setting (``CATALOG_OUTBOUND_ALLOW_PRIVATE``: the demo and the tests admit their loopback simulators so);
- link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10, fd00:ec2::254, 100.100.100.200), the
  unspecified and the multicast addresses are never connected to, whatever the allow-list says;
- the check runs on the *resolved* address, when the connection is made (``GuardedTransport``): a name that resolved
  to a public address when the vendor was registered and to 169.254.169.254 now (DNS rebinding) is refused then.
  The connection goes to the address that was checked (the ``Host`` header and TLS SNI keep the name), so a second
  resolution cannot swap it.

Same-origin rules (a vendor's pagination links stay on the vendor's origin) live with the client that knows the
origin (``app.sources.http.VendorHttp.url``); this module answers "may we connect there at all".
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

from app.errors import VendorAddressRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: host, port -> the addresses the host resolves to (injectable: tests rebind a name without a DNS server).
Resolver = Callable[[str, int], Awaitable[list[str]]]

#: Never connected to, allow-list or not: instance metadata services hand out cloud credentials.
NEVER: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: AWS/GCP/Azure/OpenStack metadata 169.254.169.254, ECS 169.254.170.2
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS instance metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "0.0.0.0/8",  # "this network": connecting to 0.0.0.0 reaches the host itself on Linux
        "::/128",
        "224.0.0.0/4",  # multicast
        "ff00::/8",
        "255.255.255.255/32",
    )
)


def _embedded_v4(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 one carries (``::ffff:169.254.169.254``, 6to4, Teredo): it is where packets go."""
    if isinstance(address, ipaddress.IPv6Address):
        for inner in (address.ipv4_mapped, address.sixtofour, address.teredo[1] if address.teredo else None):
            if inner is not None:
                return inner
    return address


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """``allow_private``: networks admitted although not public (the default admits none)."""

    allow_private: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, networks: Iterable[str]) -> OutboundPolicy:
        """From the setting's entries (``127.0.0.1``, ``10.0.0.0/8``, ``::1``); raises ``ValueError`` on a bad one."""
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()))

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why an address may not be connected to, or ``None`` when it may."""
        try:
            ip = _embedded_v4(ipaddress.ip_address(address))
        except ValueError:
            return "not an IP address"
        if any(ip in network for network in NEVER):
            return "a link-local, metadata or reserved address (never allowed)"
        if ip.is_global or any(ip in network for network in self.allow_private):
            return None
        return "a private address (not in CATALOG_OUTBOUND_ALLOW_PRIVATE)"

    def check_address(self, address: str | IPAddress) -> None:
        reason = self.refusal(address)
        if reason is not None:
            raise VendorAddressRefused(f"outbound address refused: {reason}", details={"reason": reason})

    def check_url(self, url: str | httpx.URL) -> httpx.URL:
        """Scheme, host and user info of a URL, and its address when the host is an IP literal (names are checked
        once resolved, at connect time). Returns the parsed URL."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise VendorAddressRefused("outbound URL refused: not a valid URL") from exc
        if parsed.scheme not in ("http", "https"):
            raise VendorAddressRefused("outbound URL refused: only http and https", details={"scheme": parsed.scheme})
        if parsed.userinfo:
            raise VendorAddressRefused(
                "outbound URL refused: user info in a URL (put credentials in the vendor's credentials)"
            )
        if not parsed.host:
            raise VendorAddressRefused("outbound URL refused: no host")
        if _is_ip(parsed.host):
            self.check_address(parsed.host)
        return parsed

    async def resolve(self, host: str, port: int, resolver: Resolver = system_resolver) -> str:
        """The address to connect to for ``host``: every address it resolves to must pass (an attacker's name that
        resolves to one public and one metadata address must not get a coin toss)."""
        if _is_ip(host):
            self.check_address(host)
            return host
        try:
            addresses = await resolver(host, port)
        except OSError as exc:
            raise httpx.ConnectError(f"could not resolve the vendor's host ({type(exc).__name__})") from exc
        if not addresses:
            raise httpx.ConnectError("the vendor's host resolves to no address")
        for address in addresses:
            self.check_address(address)
        return addresses[0]


def without_userinfo(url: str) -> str:
    """``url`` as it may be shown: a ``user:password@`` a legacy record carries is cut out."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    return f"{scheme}://{authority.rpartition('@')[2]}{slash}{tail}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that resolves the host itself, checks the address, and connects to that address.

    The request keeps its ``Host`` header (httpx set it from the name) and, for https, the name goes as TLS SNI and
    is what the certificate is verified against, so a vendor behind a name works as before.
    """

    def __init__(
        self,
        policy: OutboundPolicy,
        inner: httpx.AsyncBaseTransport | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.policy = policy
        self._inner = inner or httpx.AsyncHTTPTransport()
        self._resolver = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = self.policy.check_url(request.url)
        host = url.host
        port = url.port or (443 if url.scheme == "https" else 80)
        address = await self.policy.resolve(host, port, self._resolver)
        if address != host:
            request.url = url.copy_with(host=address)
            if url.scheme == "https":
                request.extensions = {**request.extensions, "sni_hostname": host}
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(policy: OutboundPolicy, *, timeout: httpx.Timeout | float = 10.0) -> httpx.AsyncClient:
    """A client for any outbound call (vendor APIs, image thumbnails): checked addresses, redirects not followed
    (a redirect is one more attacker-chosen URL: callers that want one check its ``Location`` with ``check_url``),
    and no proxy from the environment (a proxy would connect wherever it is told, past every check here)."""
    return httpx.AsyncClient(
        timeout=timeout, transport=GuardedTransport(policy), follow_redirects=False, trust_env=False
    )
