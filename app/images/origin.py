"""Downloading a vendor image: the outbound policy, a byte limit and one time limit for the whole download.

The URL came from a vendor's catalog, so it is as attacker-chosen as any vendor URL: the client is
``guarded_client`` (public addresses only unless ``CATALOG_OUTBOUND_ALLOW_PRIVATE``, never metadata addresses,
checked on the resolved address at connect time). Redirects are followed by hand, a few at most, each hop going
through the same transport and so the same checks. The byte limit counts what arrives (a ``Content-Length`` over
it is refused before the body), and the time limit covers the whole download, so a vendor trickling bytes cannot
hold a worker.
"""

from __future__ import annotations

import asyncio

import httpx

from app.errors import ImageRefused, NotFound, VendorBadResponse, VendorError, VendorTimeout
from app.sources.safety import OutboundPolicy, guarded_client

MAX_REDIRECTS = 3


class VendorImages:
    def __init__(self, policy: OutboundPolicy, *, max_bytes: int, timeout_s: float) -> None:
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._client = guarded_client(policy, timeout=httpx.Timeout(timeout_s))
        self.fetches = 0

    async def fetch(self, url: str) -> bytes:
        self.fetches += 1
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise VendorTimeout(f"the vendor image did not arrive within {self.timeout_s:g} s") from None
        except httpx.TimeoutException:
            raise VendorTimeout("the vendor image server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise VendorError(f"could not download the vendor image ({type(exc).__name__})") from None

    async def _follow(self, url: str) -> bytes:
        target = httpx.URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            async with self._client.stream(
                "GET", target, headers={"Accept": "image/*", "Accept-Encoding": "identity"}
            ) as response:
                if response.is_redirect and "location" in response.headers:
                    target = target.join(response.headers["location"])
                    continue
                if response.status_code in (404, 410):
                    raise NotFound("the vendor no longer has this image", details={"status": response.status_code})
                if response.status_code != 200:
                    raise VendorBadResponse(
                        f"the vendor image answered {response.status_code}", details={"status": response.status_code}
                    )
                return await self._body(response)
        raise VendorBadResponse(f"the vendor image redirects more than {MAX_REDIRECTS} times")

    async def _body(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large()
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > self.max_bytes:
                raise self._too_large()
        return bytes(body)

    def _too_large(self) -> ImageRefused:
        return ImageRefused(
            f"the vendor image is larger than {self.max_bytes} bytes (CATALOG_IMAGES_MAX_BYTES)",
            details={"reason": "bytes", "limit": self.max_bytes},
        )

    async def aclose(self) -> None:
        await self._client.aclose()
