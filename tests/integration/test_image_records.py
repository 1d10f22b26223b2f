"""The store's image records: what offers bring in, what an older file gets when it is opened, placeholders."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path

import orjson

from app.domain.images import image_id
from app.domain.models import Offer
from app.domain.queries import ProductQuery, StoredImage
from app.store.sqlite.catalog import SqliteCatalog
from tests.fakes import vendor

URL = "https://cdn.example/a.jpg"
OTHER = "https://cdn.example/b.jpg"


def item(vpid: str, *images: str) -> Offer:
    return Offer("v", vpid, f"Item {vpid}", Decimal("1.00"), "EUR", sku=f"S-{vpid}", images=images)


async def test_offers_bring_their_images_in_and_a_placeholder_rebuilds_the_products_leading_with_it(
    store: SqliteCatalog,
) -> None:
    await store.add_vendor(vendor("v"))
    await store.upsert_offers([item("1", URL, OTHER), item("2", OTHER)])
    assert store.image(image_id(URL)) == StoredImage(image_id(URL), URL, "v", None)
    assert store.image(image_id("https://cdn.example/never-listed.jpg")) is None
    seq = store.change_seq()
    assert await store.set_placeholder(StoredImage(image_id(OTHER), OTHER, "v"), "L00000fQfQfQ") == 1  # item 2 only
    assert await store.set_placeholder(StoredImage(image_id(OTHER), OTHER, "v"), "L00000fQfQfQ") == 0  # no change
    assert store.change_seq() > seq
    docs = {d["name"]: d for d in (orjson.loads(raw) for raw in store.list_products(ProductQuery()).items)}
    assert docs["Item 2"]["placeholder"] == "L00000fQfQfQ" and docs["Item 1"]["placeholder"] is None


async def test_an_older_file_gets_its_documents_rebuilt_once_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    first = SqliteCatalog(path)
    first.open()
    await first.add_vendor(vendor("v"))
    await first.upsert_offers([item("1", URL)])
    first.close()
    with sqlite3.connect(path) as conn:  # as an earlier version left it: no thumbnail fields, no image records
        (doc,) = conn.execute("SELECT summary FROM products").fetchone()
        old = {k: v for k, v in orjson.loads(doc).items() if k not in ("thumbnail", "placeholder")}
        conn.execute("UPDATE products SET summary = ?, etag = 'old'", (orjson.dumps(old),))
        conn.execute("DELETE FROM images")
        conn.execute("UPDATE meta SET value = 1 WHERE key = 'documents_version'")
    again = SqliteCatalog(path)
    again.open()
    try:
        (summary,) = [orjson.loads(raw) for raw in again.list_products(ProductQuery()).items]
        assert summary["thumbnail"] == "/images/" + image_id(URL)
        assert again.image(image_id(URL)) is not None
    finally:
        again.close()
