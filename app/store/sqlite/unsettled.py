"""What a shopper's miss wrote inside a sync's open transaction, served until that transaction commits.

A miss's write may run inside the bulk transaction a sync holds open (``Connections.transaction(nested=...)``): the
sync then does not commit for every miss, which is what cost it most of the throughput it lost to the interactive
lane (a commit rewrites every index page the sync's open part dirtied). But until the sync commits, the readers'
connections do not see the miss's product: its answer, the product's detail the app opens next, the tracker's
look-up of the request's product and the images the app loads would all miss. So the writer reads, in the same
transaction, what the miss wrote (its offers' products, the offers' refs, their images), and the store's reads
look here first, until the next commit (at most ``Connections.nested_commit_s`` later) or a rollback clears it.

List pages, search and the change feed show the miss after that commit, as they show any write: the shopper's own
product is what must not wait.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from app.domain.images import image_id
from app.domain.models import Offer
from app.domain.queries import OfferRef, StoredImage, StoredProduct
from app.store.sqlite.reads import offer_on, product_on


class Unsettled:
    """Written on the writer thread, read on any: each mapping is replaced whole, never changed in place."""

    def __init__(self) -> None:
        self.products: dict[str, StoredProduct] = {}
        self.offers: dict[tuple[str, str], OfferRef] = {}
        self.images: dict[str, StoredImage] = {}

    def __bool__(self) -> bool:
        return bool(self.offers)

    def record(self, conn: sqlite3.Connection, offers: Sequence[Offer]) -> None:
        """After ``offers`` were written on ``conn`` (still in its transaction): what the reads will need."""
        refs, products, images = dict(self.offers), dict(self.products), dict(self.images)
        for offer in offers:
            for key in {offer.vendor_product_id, offer.parent_id} - {None}:
                assert key is not None
                ref = offer_on(conn, offer.vendor_id, key)
                if ref is None:  # left out by the ordering guard, or not stored
                    continue
                refs[(offer.vendor_id, key)] = ref
                product = product_on(conn, ref.product_id)
                if product is not None:
                    products[ref.product_id] = product
            for url in offer.images:
                row = conn.execute(
                    "SELECT url, vendor_id, placeholder FROM images WHERE id = ?", (image_id(url),)
                ).fetchone()
                if row is not None:  # as the store holds it (a placeholder made before included)
                    images[image_id(url)] = StoredImage(image_id(url), row[0], row[1], row[2])
        self.products, self.images = products, images
        self.offers = refs  # last: a reader that finds an offer here finds its product too

    def clear(self) -> None:
        if self.offers or self.products or self.images:
            self.offers, self.products, self.images = {}, {}, {}
