"""The outbound URL policy: which addresses may be connected to, checked on the resolved address."""

from __future__ import annotations

import httpx
import pytest

from app.errors import VendorAddressRefused
from app.sources.safety import GuardedTransport, OutboundPolicy

STRICT = OutboundPolicy()
LOOPBACK = OutboundPolicy.parse(["127.0.0.0/8", "::1"])


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # cloud metadata
        "169.254.170.2",  # ECS task metadata
        "fd00:ec2::254",  # AWS metadata over IPv6
        "fe80::1",
        "100.100.100.200",
        "0.0.0.0",
        "::ffff:169.254.169.254",  # the metadata address wrapped in IPv6
        "224.0.0.1",
    ],
)
def test_metadata_and_link_local_addresses_are_never_allowed(address: str) -> None:
    everything = OutboundPolicy.parse(["0.0.0.0/0", "::/0"])  # an allow-list that admits all cannot admit these
    assert everything.refusal(address) is not None
    with pytest.raises(VendorAddressRefused, match="never allowed"):
        everything.check_address(address)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "::1", "fc00::5"])
def test_private_addresses_need_the_allow_list(address: str) -> None:
    assert STRICT.refusal(address) == "a private address (not in CATALOG_OUTBOUND_ALLOW_PRIVATE)"
    admitted = OutboundPolicy.parse([address])
    assert admitted.refusal(address) is None


def test_public_addresses_pass() -> None:
    assert STRICT.refusal("93.184.215.14") is None
    assert STRICT.refusal("2606:4700::1111") is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/x", "only http and https"),
        ("http://user:secret@example.com/", "user info"),
        ("http://169.254.169.254/latest/meta-data/", "never allowed"),
        ("http://127.0.0.1:9101/", "private address"),
        ("file:///etc/passwd", "only http and https"),
    ],
)
def test_urls_are_refused_with_a_reason(url: str, reason: str) -> None:
    with pytest.raises(VendorAddressRefused, match=reason):
        STRICT.check_url(url)


async def test_the_transport_checks_the_resolved_address_at_every_connection() -> None:
    """DNS rebinding: the name resolved to a public address first, to the metadata address the next time."""
    answers = iter([["93.184.215.14"], ["169.254.169.254"]])
    seen: list[httpx.Request] = []

    async def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    transport = GuardedTransport(STRICT, inner=httpx.MockTransport(handler), resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://shop.example/products")
        assert response.status_code == 200
        with pytest.raises(VendorAddressRefused, match="never allowed"):
            await client.get("https://shop.example/products")
    assert len(seen) == 1
    # The connection went to the checked address; the name stays in Host and SNI.
    assert seen[0].url.host == "93.184.215.14"
    assert seen[0].headers["Host"] == "shop.example"
    assert seen[0].extensions["sni_hostname"] == "shop.example"


async def test_a_name_with_any_forbidden_address_is_refused() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return ["93.184.215.14", "10.0.0.7"]

    transport = GuardedTransport(STRICT, inner=httpx.MockTransport(lambda r: httpx.Response(200)), resolver=resolver)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(VendorAddressRefused, match="private address"):
            await client.get("http://shop.example/")


async def test_loopback_is_reachable_through_the_allow_list() -> None:
    transport = GuardedTransport(LOOPBACK, inner=httpx.MockTransport(lambda r: httpx.Response(204)))
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://127.0.0.1:9/x")).status_code == 204
        assert (await client.get("http://[::1]:9/x")).status_code == 204
