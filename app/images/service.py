"""Thumbnails of the images stored offers list: looked up by id, made once, served from the disk cache.

- The id names an image only if a stored offer lists its URL (``StoredImage``): a client cannot make the service
  fetch a URL of its choosing.
- A thumbnail is a pure function of (image, size, format): its ETag is computed from those alone, so a client's
  ``If-None-Match`` is answered before anything is read or fetched, and the response may be cached for a year
  (``immutable``). A vendor that replaces an image keeps its URL rarely; when it does, the thumbnail stays the old
  one until evicted (the known cost of immutable caching).
- Concurrent requests for the same thumbnail share one download (single flight); renders run in worker threads,
  a bounded number at once, so a burst of cold thumbnails cannot starve the event loop or the CPU.
- The placeholder (BlurHash) of an image is computed the first time it is thumbnailed and recorded (the store, or
  on the kafka runtime the changelog, so every node has it); the products leading with it are rebuilt, so their
  documents carry it from then on.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from app.domain.queries import StoredImage
from app.errors import CatalogError, NotFound, UnsupportedFormat
from app.images.cache import DiskCache
from app.images.pillow import FORMATS, PillowImaging, can_encode

log = logging.getLogger(__name__)

#: Part of every ETag and cache key: bump when rendering changes (quality, resampling), so old copies are not reused.
RENDER_VERSION = 1


class ImageRecords(Protocol):
    """What the service needs of the store (``SqliteCatalog``)."""

    def image(self, image_id: str) -> StoredImage | None: ...


#: Where a new placeholder goes: the store (embedded), or the changelog every node applies (kafka), so all nodes'
#: documents carry it at the same change-feed position.
RecordPlaceholder = Callable[[StoredImage, str], Awaitable[object]]


class ImageOrigin(Protocol):
    async def fetch(self, url: str) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Variant:
    image_id: str
    w: int | None
    h: int | None
    fmt: str

    @property
    def key(self) -> str:
        return f"{self.image_id}-{self.w or 0}x{self.h or 0}-v{RENDER_VERSION}.{self.fmt}"

    @property
    def etag(self) -> str:
        return '"' + hashlib.blake2b(self.key.encode(), digest_size=12).hexdigest() + '"'

    @property
    def media_type(self) -> str:
        return FORMATS[self.fmt][1]


@dataclass(frozen=True, slots=True)
class Thumbnail:
    body: bytes
    media_type: str
    etag: str
    cached: bool


class ImageService:
    def __init__(
        self,
        store: ImageRecords,
        origin: ImageOrigin,
        imaging: PillowImaging,
        cache: DiskCache,
        record_placeholder: RecordPlaceholder,
        *,
        concurrency: int = 2,
    ) -> None:
        self.store = store
        self.record_placeholder = record_placeholder
        self.origin = origin
        self.imaging = imaging
        self.cache = cache
        self._renders = asyncio.Semaphore(concurrency)
        self._flights: dict[str, asyncio.Future[Thumbnail]] = {}

    def variant(self, image_id: str, w: int | None, h: int | None, fmt: str) -> Variant:
        """The variant asked for, if the id names a stored image (404 otherwise, before anything is fetched)."""
        if self.store.image(image_id) is None:
            raise NotFound("no stored product lists this image", details={"image_id": image_id})
        if not can_encode(fmt):
            raise UnsupportedFormat(f"this build cannot encode {fmt}", details={"format": fmt})
        return Variant(image_id, w, h, fmt)

    async def thumbnail(self, variant: Variant) -> Thumbnail:
        body = self.cache.get(variant.key)
        if body is not None:
            return Thumbnail(body, variant.media_type, variant.etag, cached=True)
        flight = self._flights.get(variant.key)
        if flight is not None:
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[variant.key] = flight
        try:
            made = await self._make(variant)
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            flight.set_result(made)
            return made
        finally:
            del self._flights[variant.key]

    async def _make(self, variant: Variant) -> Thumbnail:
        stored = self.store.image(variant.image_id)
        if stored is None:  # the offers listing it went away since the lookup
            raise NotFound("no stored product lists this image", details={"image_id": variant.image_id})
        original = await self.origin.fetch(stored.url)
        async with self._renders:
            rendered = await asyncio.to_thread(
                self.imaging.render,
                original,
                w=variant.w,
                h=variant.h,
                fmt=variant.fmt,
                placeholder=stored.placeholder is None,
            )
        self.cache.put(variant.key, rendered.body)  # on the loop: the cache's index has one owner thread
        if rendered.placeholder is not None:
            try:
                await self.record_placeholder(stored, rendered.placeholder)
            except CatalogError as exc:  # the broker is down, say: the thumbnail is good, the next one tries again
                log.warning("placeholder of %s not recorded: %s", variant.image_id, exc.message)
        return Thumbnail(rendered.body, rendered.media_type, variant.etag, cached=False)
