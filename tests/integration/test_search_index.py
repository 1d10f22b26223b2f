"""The Tantivy search index on disk: relevance (typos, prefixes), filters, sorts, cursors, facets, writes."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.domain.queries import Sort
from app.domain.unify import product_id
from app.search import PRICE_BANDS, SearchDoc, SearchFilters, TantivyIndex

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def doc(n: int, name: str, **kw: object) -> SearchDoc:
    fields: dict[str, object] = {
        "id": product_id(f"test:{n}"),
        "name": name,
        "description": "",
        "brand": None,
        "category": None,
        "vendors": ("shop-a",),
        "min_price_base": 10.0,
        "in_stock": True,
        "updated_at": T0 + timedelta(minutes=n),
    }
    fields.update(kw)
    return SearchDoc(**fields)  # type: ignore[arg-type]


MASCARA = doc(
    1,
    "Essence Mascara Lash Princess",
    description="A volumizing mascara for dramatic lashes.",
    brand="Essence",
    category="beauty",
    min_price_base=9.99,
)
LAPTOP = doc(2, "Apple MacBook Pro 14 Inch", brand="Apple", category="laptops", min_price_base=1999.0)
COFFEE = doc(3, "Nescafé Gold Instant Coffee", brand="Nestlé", category="groceries", min_price_base=7.5)
POWDER = doc(4, "Lash Serum", description="Pairs well with any mascara.", brand="Glamour", category="beauty")


def catalog(n: int = 600, seed: int = 7) -> list[SearchDoc]:
    """Varied products: a few brands and categories, many shared words, prices with ties."""
    rng = random.Random(seed)
    nouns = ["Phone", "Case", "Charger", "Mascara", "Lipstick", "Sneakers", "Shirt", "Lamp", "Blender", "Watch"]
    adjectives = ["Black", "Wireless", "Classic", "Premium", "Compact", "Leather", "Organic"]
    brands = ["Apple", "Samsung", "Nestlé", "NESTLE", "Essence", "Puma", None]
    categories = ["beauty", "smartphones", "mens-shoes", "home-decoration", "groceries"]
    out = [MASCARA, LAPTOP, COFFEE, POWDER]
    for i in range(10, 10 + n):
        out.append(
            doc(
                i,
                f"{rng.choice(adjectives)} {rng.choice(nouns)}"
                + (f" {rng.randint(1, 9)}" if rng.random() < 0.5 else ""),
                description=f"{rng.choice(adjectives)} and {rng.choice(adjectives).lower()} {rng.choice(nouns)}.",
                brand=rng.choice(brands),
                category=rng.choice(categories),
                vendors=tuple(sorted(rng.sample(["shop-a", "shop-b", "shop-c"], rng.randint(1, 2)))),
                min_price_base=rng.choice([5.0, 9.99, 10.0, 24.99, 25.0, 49.5, 100.0, 250.0, 999.0, 1000.0]),
                in_stock=rng.random() < 0.8,
                updated_at=T0 + timedelta(minutes=rng.randint(0, 50)),
            )
        )
    return out


@pytest.fixture
def index(tmp_path: Path) -> Iterator[TantivyIndex]:
    idx = TantivyIndex(tmp_path / "index")
    idx.rebuild(catalog())
    yield idx
    idx.close()


def all_pages(idx: TantivyIndex, text: str | None, sort: Sort, filters: SearchFilters | None = None) -> list[str]:
    ids: list[str] = []
    after = None
    while True:
        page = idx.search(text, filters, sort=sort, limit=7, after=after)
        ids += page.ids
        if page.next_after is None:
            return ids
        after = page.next_after


# -- relevance -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("typo", ["mascra", "mascaar", "masacra", "mascarra", "princes", "prinsess"])
def test_one_typo_in_a_long_word_finds_the_product(index: TantivyIndex, typo: str) -> None:
    assert MASCARA.id in index.search(f"essence {typo}").ids


def test_short_words_need_their_exact_spelling(index: TantivyIndex) -> None:
    assert MASCARA.id not in index.search("lahs essence").ids
    assert MASCARA.id in index.search("lash essence").ids


def test_two_typos_in_one_word_do_not_match(index: TantivyIndex) -> None:
    assert index.search("essence mxscrra").ids == []


@pytest.mark.parametrize("typed", ["ess", "essence mas", "essence masc", "lash prin", "princess lash ess"])
def test_the_last_word_matches_as_a_prefix(index: TantivyIndex, typed: str) -> None:
    assert MASCARA.id in index.search(typed, limit=50).ids


def test_a_prefix_with_a_typo_while_typing(index: TantivyIndex) -> None:
    assert MASCARA.id in index.search("essence mascr").ids
    assert MASCARA.id in index.search("essence msacar").ids


def test_every_word_must_match(index: TantivyIndex) -> None:
    assert index.search("mascara macbook").ids == []


def test_accents_and_case_are_folded(index: TantivyIndex) -> None:
    assert COFFEE.id in index.search("NESCAFE").ids
    assert COFFEE.id in index.search("nescafé gold").ids


def test_a_name_match_ranks_above_a_description_match(index: TantivyIndex) -> None:
    ids = index.search("lash mascara").ids
    assert ids.index(MASCARA.id) < ids.index(POWDER.id)


def test_exact_word_ranks_above_its_typo_variants(tmp_path: Path) -> None:
    idx = TantivyIndex(tmp_path / "typo")
    exact, near = doc(1, "Leather Wallet"), doc(2, "Leathers Wallet")
    idx.rebuild([near, exact])
    assert idx.search("leather").ids == [exact.id, near.id]
    idx.close()


def test_text_without_words_finds_nothing(index: TantivyIndex) -> None:
    assert index.search("!!! ...").ids == []
    assert index.count("?") == 0


def test_relevance_pages_join_up_and_ties_go_by_id(tmp_path: Path) -> None:
    idx = TantivyIndex(tmp_path / "ties")
    same = [doc(i, "Blue Bottle", min_price_base=float(i)) for i in range(40)]
    idx.upsert(same[:20])
    idx.commit()
    idx.upsert(same[20:])  # a second segment: ties must not follow segment order
    idx.commit()
    expected = sorted(d.id for d in same)
    assert all_pages(idx, "bottle", Sort.RELEVANCE) == expected
    assert idx.search("bottle", limit=40).ids == expected
    idx.close()


# -- filters and sorts -----------------------------------------------------------------------------------------


def reference(docs: list[SearchDoc], f: SearchFilters) -> set[str]:
    from app.domain.normalize import brand_key

    out = set()
    for d in docs:
        if f.vendor and f.vendor not in d.vendors:
            continue
        if f.brand and brand_key(d.brand) != brand_key(f.brand):
            continue
        if f.category and brand_key(d.category) != brand_key(f.category):
            continue
        if f.min_price is not None and d.min_price_base < f.min_price:
            continue
        if f.max_price is not None and d.min_price_base > f.max_price:
            continue
        if f.in_stock is not None and d.in_stock != f.in_stock:
            continue
        out.add(d.id)
    return out


@pytest.mark.parametrize(
    "filters",
    [
        SearchFilters(vendor="shop-b"),
        SearchFilters(brand="nestle"),
        SearchFilters(brand="Nestlé", in_stock=True),
        SearchFilters(category="Beauty"),
        SearchFilters(min_price=10.0, max_price=100.0),
        SearchFilters(max_price=9.99),
        SearchFilters(in_stock=False, vendor="shop-a", min_price=25.0),
    ],
)
def test_filters_return_what_they_say(index: TantivyIndex, filters: SearchFilters) -> None:
    docs = catalog()
    expected = reference(docs, filters)
    assert expected, "the fixture should have products for every filter"
    assert set(all_pages(index, None, Sort.UPDATED, filters)) == expected
    assert index.count(None, filters) == len(expected)


def test_a_brand_without_letters_matches_nothing(index: TantivyIndex) -> None:
    assert index.search(None, SearchFilters(brand="&&")).ids == []


@pytest.mark.parametrize("sort", [Sort.PRICE, Sort.PRICE_DESC, Sort.UPDATED])
def test_sorts_page_through_everything_in_order_with_ties_by_id(index: TantivyIndex, sort: Sort) -> None:
    docs = {d.id: d for d in catalog()}
    ids = all_pages(index, None, sort)
    if sort is Sort.PRICE:
        expected = sorted(docs, key=lambda i: (docs[i].min_price_base, i))
    elif sort is Sort.PRICE_DESC:
        expected = sorted(docs, key=lambda i: (docs[i].min_price_base, i), reverse=True)
    else:
        expected = sorted(docs, key=lambda i: (docs[i].updated_at, i), reverse=True)
    assert ids == expected


def test_sorted_search_with_text(index: TantivyIndex) -> None:
    docs = {d.id: d for d in catalog()}
    ids = all_pages(index, "black", Sort.PRICE)
    assert ids == sorted(ids, key=lambda i: (docs[i].min_price_base, i))
    assert set(ids) == set(all_pages(index, "black", Sort.RELEVANCE))


def test_relevance_without_text_is_newest_first(index: TantivyIndex) -> None:
    assert index.search(None, limit=10).ids == index.search(None, sort=Sort.UPDATED, limit=10).ids


def test_a_key_cursor_continues_after_its_product_when_others_arrive(index: TantivyIndex) -> None:
    first = index.search(None, sort=Sort.PRICE, limit=5)
    cheaper = doc(9000, "Cheap Thing", min_price_base=0.01)
    index.upsert([cheaper])
    index.commit()
    second = index.search(None, sort=Sort.PRICE, limit=5, after=first.next_after)
    assert cheaper.id not in second.ids
    assert not set(first.ids) & set(second.ids)


# -- facets ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "filters"),
    [(None, SearchFilters()), ("black", SearchFilters()), ("pho", SearchFilters(in_stock=True, vendor="shop-a"))],
)
def test_facets_count_what_the_filters_return(index: TantivyIndex, text: str | None, filters: SearchFilters) -> None:
    facets = index.facets(text, filters, size=100)
    assert facets.total == index.count(text, filters) > 0
    assert facets.brand and facets.category and facets.vendor
    for value in facets.brand:
        assert value.count == index.count(text, replace(filters, brand=value.key)), value
    for value in facets.category:
        assert value.count == index.count(text, replace(filters, category=value.key)), value
    for value in facets.vendor:
        # A product sells at several vendors; with a vendor filter set, the others count its co-sellers.
        if filters.vendor is None or value.key == filters.vendor:
            assert value.count == index.count(text, replace(filters, vendor=value.key)), value
        else:
            assert value.count <= facets.total
    for band, value in zip(PRICE_BANDS, facets.price, strict=True):
        assert value.key == band.key
        inclusive = index.count(text, replace(filters, min_price=band.low, max_price=band.high))
        at_high = index.count(text, replace(filters, min_price=band.high, max_price=band.high)) if band.high else 0
        assert value.count == inclusive - at_high, band
    for stock, count in facets.in_stock.items():
        assert count == index.count(text, replace(filters, in_stock=stock))
    assert sum(v.count for v in facets.price) == facets.total
    assert sum(facets.in_stock.values()) == facets.total


def test_facets_merge_spellings_of_one_brand(index: TantivyIndex) -> None:
    nestle = [v for v in index.facets(None, size=100).brand if v.key == "nestle"]
    assert len(nestle) == 1
    assert nestle[0].label in ("Nestlé", "NESTLE")


def test_facets_keep_the_most_frequent_values(index: TantivyIndex) -> None:
    full = index.facets(None, size=100)
    top = index.facets(None, size=2)
    assert top.brand == full.brand[:2]
    assert top.brand_other == sum(v.count for v in full.brand[2:])


# -- writes ----------------------------------------------------------------------------------------------------


def test_writes_are_seen_after_commit_and_not_before(index: TantivyIndex) -> None:
    index.upsert([replace(MASCARA, name="Essence Volume Booster")])
    assert MASCARA.id in index.search("princess").ids
    index.commit()
    assert MASCARA.id not in index.search("princess").ids
    assert index.search("volume booster").ids == [MASCARA.id]
    assert index.count(None) == len(catalog())  # replaced, not added
    index.delete([MASCARA.id])
    index.commit()
    assert index.search("volume booster").ids == []
    assert index.count(None) == len(catalog()) - 1


def test_writes_waiting_for_a_shared_commit_are_seen_once_it_happens(index: TantivyIndex) -> None:
    index.upsert([doc(7001, "Teapot Alpha")])
    index.commit_soon(watermark=7, within=3600)
    index.upsert([doc(7002, "Teapot Beta")])
    index.commit_soon(watermark=8, within=3600)
    assert index.search("teapot").ids == []
    index.commit()  # what the window's timer does when it fires; here at once
    assert sorted(index.search("teapot").ids) == sorted([product_id("test:7001"), product_id("test:7002")])
    assert index.watermark == 8


def test_a_shared_commit_happens_by_itself(index: TantivyIndex) -> None:
    index.upsert([doc(7003, "Kettle Gamma")])
    committed = threading.Event()
    real = index.commit

    def commit(watermark: int | None = None) -> None:
        real(watermark)
        committed.set()

    index.commit = commit  # type: ignore[method-assign]
    index.commit_soon(within=0.01)
    assert committed.wait(30)
    assert index.search("kettle").ids == [product_id("test:7003")]


def test_close_commits_what_was_written(tmp_path: Path) -> None:
    idx = TantivyIndex(tmp_path / "index")
    idx.upsert([doc(7004, "Ladle Delta")])
    idx.commit_soon(watermark=3, within=3600)
    idx.close()
    reopened = TantivyIndex(tmp_path / "index")
    assert reopened.search("ladle").ids == [product_id("test:7004")]
    assert reopened.watermark == 3
    reopened.close()


def test_the_index_is_on_disk(tmp_path: Path) -> None:
    idx = TantivyIndex(tmp_path / "index")
    idx.rebuild(catalog())
    idx.close()
    reopened = TantivyIndex(tmp_path / "index")
    assert reopened.search("essence mascara").ids[0] == MASCARA.id
    assert reopened.count(None) == len(catalog())


def test_rebuild_equals_incremental(tmp_path: Path) -> None:
    docs = catalog(400, seed=11)
    incremental = TantivyIndex(tmp_path / "incremental")
    for start in range(0, len(docs), 90):  # several store transactions
        incremental.upsert(docs[start : start + 90])
        incremental.commit()
    changed = [replace(d, name=d.name + " Refurbished", min_price_base=d.min_price_base + 1) for d in docs[::7]]
    gone = [d.id for d in docs[3::11]]
    incremental.upsert(changed)
    incremental.delete(gone)
    incremental.commit()
    final = {d.id: d for d in docs} | {d.id: d for d in changed}
    for pid in gone:
        final.pop(pid)
    rebuilt = TantivyIndex(tmp_path / "rebuilt")
    rebuilt.rebuild(final.values())
    for text in (None, "black", "refurbished", "pho", "wireles charger"):
        for sort in Sort:
            assert all_pages(incremental, text, sort) == all_pages(rebuilt, text, sort), (text, sort)
        assert incremental.facets(text) == rebuilt.facets(text)
    incremental.close()
    rebuilt.close()


def test_searches_from_threads_while_the_writer_commits(index: TantivyIndex) -> None:
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                ids = index.search("essence mascara").ids
                assert ids[:1] == [MASCARA.id]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    for i in range(5):
        index.upsert([doc(5000 + i, f"Gadget {i}")])
        index.commit()
    stop.set()
    for t in readers:
        t.join()
    assert not errors
    assert index.count("gadget") == 5


def test_the_watermark_survives_a_reopen_and_follows_commits(tmp_path: Path) -> None:
    idx = TantivyIndex(tmp_path / "index")
    assert idx.watermark is None
    idx.rebuild(catalog(20), watermark=40)
    idx.upsert([doc(9001, "Late Arrival")])
    assert idx.watermark == 40  # not before the commit
    idx.commit(watermark=41)
    idx.close()
    reopened = TantivyIndex(tmp_path / "index")
    assert reopened.watermark == 41
    assert reopened.search("late arrival").ids == [product_id("test:9001")]
    reopened.close()


def test_an_index_of_another_schema_is_replaced_by_an_empty_one(tmp_path: Path) -> None:
    from tantivy import Document, Index, SchemaBuilder

    (tmp_path / "index").mkdir()
    old = Index(SchemaBuilder().add_text_field("title", stored=True).build(), path=str(tmp_path / "index"))
    writer = old.writer(heap_size=15_000_000)
    writer.add_document(Document(title="from another version"))
    writer.commit()
    writer.wait_merging_threads()
    idx = TantivyIndex(tmp_path / "index")
    assert idx.recreated
    assert idx.watermark is None
    assert idx.count(None) == 0
    idx.rebuild(catalog(10))
    assert idx.count(None) == 14
    idx.close()


def test_ids_of_any_length_come_back_whole_and_in_order(tmp_path: Path) -> None:
    idx = TantivyIndex(tmp_path / "index")
    ids = [
        "short",
        "x" * 24,
        "x" * 23 + "y",
        "offer:a-vendor-with-a-long-name:000123",
        "offer:a-vendor-with-a-long-name:0001",
    ]
    idx.rebuild([replace(doc(i, "Green Kettle"), id=pid) for i, pid in enumerate(ids)])
    assert idx.search("kettle").ids == sorted(ids)
    assert all_pages(idx, "kettle", Sort.PRICE) == sorted(ids)
    idx.close()


# -- the real DummyJSON products -------------------------------------------------------------------------------


def real_products() -> list[SearchDoc]:
    from simulators.catalog import load_raw_products

    return [
        doc(
            int(raw["id"]),
            raw["title"],
            description=raw["description"],
            brand=raw.get("brand"),
            category=raw["category"],
            min_price_base=float(raw["price"]),
        )
        for raw in load_raw_products()
    ]


@pytest.fixture(scope="module")
def real_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TantivyIndex]:
    idx = TantivyIndex(tmp_path_factory.mktemp("real") / "index")
    idx.rebuild(real_products())
    yield idx
    idx.close()


def _long_words(title: str) -> list[str]:
    return [w for w in title.split() if len(w) >= 5 and w.isalpha()]


def test_every_real_product_is_found_by_its_title_with_a_typo(real_index: TantivyIndex) -> None:
    missed = []
    tried = 0
    for product in real_products():
        words = product.name.split()
        long = _long_words(product.name)
        if not long:
            continue
        tried += 1
        target = max(long, key=len)
        # One letter dropped (a hurried typist), or in a 5-letter word one swapped with the next, so the typed word
        # still has the 5 letters typo tolerance starts at (a 4-letter word must be spelt right, as in Meilisearch).
        typo = target[:2] + target[3:] if len(target) > 5 else target[:2] + target[3] + target[2] + target[4:]
        query = " ".join(typo if w == target else w for w in words)
        if product.id not in real_index.search(query, limit=20).ids:
            missed.append(query)
    assert tried > 150
    assert missed == [], "\n".join(missed)


def test_every_real_product_is_found_as_its_title_is_typed(real_index: TantivyIndex) -> None:
    missed = []
    for product in real_products():
        words = product.name.split()
        last = words[-1]
        if len(last) < 3 or not last.isalpha():
            continue
        typed = " ".join([*words[:-1], last[: max(2, len(last) // 2)]])
        if product.id not in real_index.search(typed, limit=20).ids:
            missed.append(typed)
    assert missed == []
