"""Image ids and thumbnail paths: a pure function of the vendor's image URL.

``GET /images/{id}`` must never let a client choose what the service fetches, so the id is not the URL but a
hash of it, and the store answers only the ids of URLs its offers brought in (``images`` table). Being a pure
function, every node (both runtimes) derives the same id and the same document from the same offers: nothing new
travels on the changelog.
"""

from __future__ import annotations

import functools
import hashlib
import re

PREFIX = "i_"
#: 20 hex digits (80 bits): collisions between the URLs of one catalog are out of reach.
ID_PATTERN = r"^i_[0-9a-f]{20}$"
_ID = re.compile(ID_PATTERN)
#: Where a document's thumbnail links point; the client adds ``w``, ``h`` and ``format``.
PATH = "/images/"


@functools.lru_cache(maxsize=16_384)
def image_id(url: str) -> str:
    """Cached: every rebuild of a product derives the ids of all its offers' images again (~8 per offer)."""
    return PREFIX + hashlib.blake2b(url.encode(), digest_size=10).hexdigest()


def is_image_id(value: str) -> bool:
    return _ID.match(value) is not None


def thumbnail_path(url: str) -> str:
    return PATH + image_id(url)
