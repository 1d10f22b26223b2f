"""GET /images/{id} over real HTTP: real JPEG and PNG files from a local vendor image server, resized by Pillow,
cached on disk, refused when the outbound policy or the limits say so; documents carry the thumbnails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import blurhash  # type: ignore[import-untyped]
import httpx
import pytest
from PIL import Image

from app.domain.images import image_id
from app.domain.models import Offer
from app.images.pillow import can_encode
from app.store.sqlite.catalog import SqliteCatalog
from simulators.images import ImageServer, encoded, photo
from tests.fakes import vendor
from tests.support import ApiServer, assert_error, fast_settings

MAX_BYTES = 1_200_000
MAX_PIXELS = 4_000_000


@pytest.fixture(scope="module")
def images() -> Iterator[ImageServer]:
    heavy = encoded(photo(2000, 2000, seed=3), "JPEG", quality=97)  # 4 M pixels: let through
    assert len(heavy) > MAX_BYTES
    files = {
        "/shoe.jpg": (encoded(photo(1600, 1200, seed=1), "JPEG", quality=90), "image/jpeg"),
        "/bag.png": (encoded(photo(800, 600, seed=2, alpha=True), "PNG"), "image/png"),
        # 3000 x 3000 of one colour: a few KB that would decode to 27 MB
        "/bomb.png": (encoded(Image.new("RGB", (3000, 3000), (200, 30, 30)), "PNG"), "image/png"),
        "/heavy.jpg": (heavy, "image/jpeg"),
    }
    redirects = {"/moved.jpg": "http://169.254.169.254/latest/meta-data/iam/security-credentials/"}
    with ImageServer(files, redirects) as server:
        yield server


PRODUCTS = {
    "shoe": ("/shoe.jpg", "/bag.png"),
    "bomb": ("/bomb.png",),
    "heavy": ("/heavy.jpg",),
    "gone": ("/gone.jpg",),
    "moved": ("/moved.jpg",),
}
FOREIGN = {
    "metadata": "http://169.254.169.254/latest/meta-data/iam/x.jpg",
    "private": "http://10.20.30.40/x.jpg",
}


def _offers(images: ImageServer) -> list[Offer]:
    offers = [
        Offer(
            vendor_id="v",
            vendor_product_id=name,
            title=f"Product {name}",
            price=Decimal("10.00"),
            currency="EUR",
            sku=f"SKU-{name}",
            images=tuple(images.url(p) for p in paths),
        )
        for name, paths in PRODUCTS.items()
    ]
    offers += [
        Offer(vendor_id="v", vendor_product_id=name, title=name, price=Decimal("1"), currency="EUR", images=(url,))
        for name, url in FOREIGN.items()
    ]
    return offers


def _stored(db: Path, images: ImageServer) -> None:
    store = SqliteCatalog(db)
    store.open()

    async def fill() -> None:
        await store.add_vendor(vendor("v"))
        await store.upsert_offers(_offers(images))

    asyncio.run(fill())
    store.close()


@pytest.fixture
def api_of(images: ImageServer, tmp_path: Path) -> Iterator[Any]:
    servers: list[ApiServer] = []
    clients: list[httpx.Client] = []

    def start(**overrides: Any) -> httpx.Client:
        db = tmp_path / "catalog.db"
        if not db.exists():
            _stored(db, images)
        values: dict[str, Any] = {"images_max_bytes": MAX_BYTES, "images_max_pixels": MAX_PIXELS}
        server = ApiServer(fast_settings(db, **{**values, **overrides}))
        server.start()
        servers.append(server)
        clients.append(httpx.Client(base_url=server.base_url, timeout=20))
        return clients[-1]

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


@pytest.fixture
def api(api_of: Any) -> httpx.Client:
    client: httpx.Client = api_of()
    return client


def path_of(images: ImageServer, path: str) -> str:
    return "/images/" + image_id(images.url(path))


def decoded(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    return Image.open(io.BytesIO(response.content))


def test_jpeg_and_png_are_resized_into_each_format(api: httpx.Client, images: ImageServer) -> None:
    shoe = api.get(path_of(images, "/shoe.jpg"), params={"w": 200, "format": "webp"})
    picture = decoded(shoe)
    assert (picture.format, picture.size) == ("WEBP", (200, 150))
    assert shoe.headers["content-type"] == "image/webp"
    assert shoe.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert len(shoe.content) < len(images.files["/shoe.jpg"][0]) / 10

    bag = api.get(path_of(images, "/bag.png"), params={"w": 100, "h": 100, "format": "jpeg"})
    picture = decoded(bag)
    assert (picture.format, picture.size, picture.mode) == ("JPEG", (100, 75), "RGB")
    assert picture.getpixel((0, 0)) == pytest.approx((255, 255, 255), abs=8)  # transparency onto white

    kept = decoded(api.get(path_of(images, "/bag.png"), params={"h": 60}))
    assert (kept.format, kept.size, kept.mode) == ("WEBP", (80, 60), "RGBA")  # WebP keeps the alpha

    never_enlarged = decoded(api.get(path_of(images, "/bag.png"), params={"w": 2000, "format": "jpeg"}))
    assert never_enlarged.size == (800, 600)

    avif = api.get(path_of(images, "/shoe.jpg"), params={"w": 120, "format": "avif"})
    if can_encode("avif"):
        assert avif.headers["content-type"] == "image/avif"
        assert decoded(avif).size == (120, 90)
    else:
        assert_error(avif, 415, "unsupported_format")


def test_etag_answers_304_and_a_thumbnail_is_made_once(api_of: Any, images: ImageServer) -> None:
    api = api_of()
    url = path_of(images, "/shoe.jpg")
    before = images.hits["/shoe.jpg"]
    first = api.get(url, params={"w": 321})
    assert first.status_code == 200 and first.headers["x-cache"] == "miss"
    etag = first.headers["etag"]
    again = api.get(url, params={"w": 321})
    assert again.headers["x-cache"] == "hit" and again.content == first.content and again.headers["etag"] == etag
    unchanged = api.get(url, params={"w": 321}, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b"" and unchanged.headers["etag"] == etag
    assert api.get(url, params={"w": 322}).headers["etag"] != etag  # each size its own tag
    assert images.hits["/shoe.jpg"] == before + 2  # 321 and 322, each once

    # Many clients asking for one new thumbnail at once: one download.
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.get(url, params={"w": 99, "format": "jpeg"}), range(8)))
    assert {a.status_code for a in answers} == {200} and len({a.content for a in answers}) == 1
    assert images.hits["/shoe.jpg"] == before + 3

    # The cache is on disk: a restarted node serves it without the vendor.
    restarted = api_of()
    assert restarted.get(url, params={"w": 321}).headers["x-cache"] == "hit"
    assert images.hits["/shoe.jpg"] == before + 3


def test_documents_carry_thumbnails_and_the_placeholder_once_thumbnailed(
    api: httpx.Client, images: ImageServer
) -> None:
    items = api.get("/products", params={"limit": 100}).json()["items"]
    shoe_id = next(item["id"] for item in items if item["name"] == "Product shoe")

    def shoe(**params: Any) -> dict[str, Any]:
        items = api.get("/products", params={"limit": 100, **params}).json()["items"]
        found: dict[str, Any] = next(item for item in items if item["id"] == shoe_id)
        return found

    listed = shoe(fields="id,thumbnail,placeholder")
    assert listed == {"id": listed["id"], "thumbnail": path_of(images, "/shoe.jpg"), "placeholder": None}
    detail = api.get(f"/products/{listed['id']}").json()
    assert detail["thumbnails"] == [path_of(images, "/shoe.jpg"), path_of(images, "/bag.png")]
    feed = api.get("/changes").json()

    assert api.get(path_of(images, "/shoe.jpg"), params={"w": 64}).status_code == 200
    placeholder = shoe()["placeholder"]
    assert isinstance(placeholder, str) and blurhash.components(placeholder) == (4, 3)
    assert api.get(f"/products/{listed['id']}").json()["placeholder"] == placeholder
    # The change feed carries the new document (an offline copy learns the placeholder too).
    changed = api.get("/changes", params={"since": feed["next"]}).json()["changes"]
    assert [(c["id"], c["product"]["placeholder"]) for c in changed] == [(listed["id"], placeholder)]
    # Only the lead image's placeholder is in the document: thumbnailing the second image changes nothing.
    assert api.get(path_of(images, "/bag.png"), params={"w": 64}).status_code == 200
    assert api.get("/changes", params={"since": feed["next"]}).json()["changes"] == changed


def test_limits_and_the_outbound_policy_refuse(api: httpx.Client, images: ImageServer) -> None:
    bomb = assert_error(api.get(path_of(images, "/bomb.png")), 502, "image_refused")
    assert bomb["details"]["reason"] == "pixels"
    heavy = assert_error(api.get(path_of(images, "/heavy.jpg")), 502, "image_refused")
    assert heavy["details"] == {"reason": "bytes", "limit": MAX_BYTES}
    for url in FOREIGN.values():
        assert_error(api.get("/images/" + image_id(url)), 502, "vendor_address_refused")
    assert_error(api.get(path_of(images, "/moved.jpg")), 502, "vendor_address_refused")
    assert images.hits["/moved.jpg"] == 1  # the redirect was read, its target never connected to
    assert_error(api.get(path_of(images, "/gone.jpg")), 404, "not_found")


def test_only_images_of_stored_offers_have_an_id(api: httpx.Client, images: ImageServer) -> None:
    hits = sum(images.hits.values())
    # A URL on the very server the offers use, but no offer lists it: nothing is fetched.
    unlisted = image_id(images.url("/shoe.jpg?size=original"))
    assert_error(api.get(f"/images/{unlisted}"), 404, "not_found")
    assert_error(api.get(f"/images/{unlisted}", headers={"If-None-Match": "*"}), 404, "not_found")
    assert_error(api.get("/images/shoe.jpg"), 422, "invalid_input")  # not an id: no way to pass a URL
    assert api.get("/images/" + images.url("/shoe.jpg").replace("/", "%2F")).status_code == 404  # no such route
    for params in ({"w": 0}, {"w": 2049}, {"h": "+5"}, {"w": "abc"}, {"format": "gif"}):
        assert_error(api.get(path_of(images, "/shoe.jpg"), params=params), 422, "invalid_input")
    assert sum(images.hits.values()) == hits


def test_the_cache_stays_under_its_size_evicting_the_least_recently_used(
    api_of: Any, images: ImageServer, tmp_path: Path
) -> None:
    folder = tmp_path / "thumbs"
    api = api_of(images_cache_mb=1, images_cache_dir=folder)
    url = path_of(images, "/shoe.jpg")
    before = images.hits["/shoe.jpg"]
    sizes: list[int] = []
    made = 0
    while made < 1.5 * 1024 * 1024:  # more than fits
        sizes.append(1600 - 10 * len(sizes))
        answer = api.get(url, params={"w": sizes[-1], "format": "jpeg"})
        assert answer.status_code == 200
        made += len(answer.content)
    assert sum(f.stat().st_size for f in folder.iterdir()) <= 1024 * 1024
    assert images.hits["/shoe.jpg"] == before + len(sizes)
    assert api.get(url, params={"w": sizes[-1], "format": "jpeg"}).headers["x-cache"] == "hit"
    assert api.get(url, params={"w": sizes[0], "format": "jpeg"}).headers["x-cache"] == "miss"  # evicted first
    assert images.hits["/shoe.jpg"] == before + len(sizes) + 1


def test_thumbnails_not_made_yet_are_rate_limited_per_client_and_cached_ones_are_not(
    api_of: Any, images: ImageServer
) -> None:
    api = api_of(rate_limit_thumbnails_per_min=1, rate_limit_thumbnail_burst=2)
    url = path_of(images, "/bag.png")
    assert [api.get(url, params={"w": w}).status_code for w in (31, 32)] == [200, 200]
    limited = api.get(url, params={"w": 33})
    assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    for _ in range(5):
        assert api.get(url, params={"w": 31}).headers["x-cache"] == "hit"
