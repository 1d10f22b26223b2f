"""Turning stored product documents into responses: converted prices, sparse fields, signed cursors, ETags.

Product documents are precomputed JSON bytes; the common request (no ``currency``, no ``fields``) is served as
those bytes. Only a request asking for a conversion or a subset decodes them, and its ETag is derived from the
document's own, so a cache can never mix up two variants of one product.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson
from fastapi import Request, Response

from app.api.responses import json_with_etag
from app.catalog.service import CatalogService, MissTiming, Served
from app.domain import documents
from app.domain.cursor import InvalidCursor, TokenSigner
from app.domain.money import Rates
from app.domain.queries import ProductQuery
from app.errors import InvalidInput, InvalidToken
from app.search import Facets, FacetValue

Display = tuple[Rates, str]
#: The facet groups asked for and how many values each keeps.
FacetRequest = tuple[tuple[str, ...], int]


def display_rates(catalog: CatalogService, currency: str | None) -> Display | None:
    """The rates and code for ``?currency=``; checked before any lookup so a typo never costs a fetch. Exactly
    the codes the rates file lists (the schema's enum), nothing else."""
    if currency is None:
        return None
    rates = catalog.store.rates
    if rates is None or not rates.knows(currency):
        raise InvalidInput(
            f"no exchange rate for {currency!r}: the rates file does not list it",
            details={"parameter": "currency", "rates_date": rates.date.isoformat() if rates else None},
        )
    return rates, currency


def _display(doc: dict[str, Any], rates: Rates, currency: str) -> None:
    """Converted prices next to the originals."""
    converted = [
        (
            rates.convert(Decimal(p["min"]), p["currency"], currency),
            rates.convert(Decimal(p["max"]), p["currency"], currency),
        )
        for p in doc["prices"]
        if rates.knows(p["currency"])
    ]
    doc["display"] = {
        "currency": currency,
        "min_price": str(min(c[0] for c in converted)) if converted else None,
        "max_price": str(max(c[1] for c in converted)) if converted else None,
        "rates_date": rates.date.isoformat(),
    }
    for offer in doc.get("offers", ()):
        known = rates.knows(offer["currency"])
        offer["display_price"] = (
            str(rates.convert(Decimal(offer["price"]), offer["currency"], currency)) if known else None
        )


class View:
    """What a request asks of each document: a conversion, a subset of fields, or neither."""

    def __init__(self, display: Display | None, fields: Sequence[str] | None) -> None:
        """``fields``: the fields kept, ``id`` always among them (a client must know what it holds)."""
        self.display = display
        self.fields = tuple(f for f in fields if f != "id") if fields is not None else None

    @property
    def plain(self) -> bool:
        return self.display is None and self.fields is None

    def render(self, raw: bytes) -> bytes:
        if self.plain:
            return raw
        doc = orjson.loads(raw)
        if self.display is not None:
            _display(doc, *self.display)
        if self.fields is not None:
            doc = {name: doc[name] for name in ("id", *self.fields) if name in doc}
        return orjson.dumps(doc)

    def etag(self, etag: str) -> str:
        """Differs per currency, rates date and field list, so a cache never serves one variant for another."""
        if self.plain:
            return etag
        parts = [etag]
        if self.display is not None:
            parts += [self.display[1], self.display[0].date.isoformat()]
        if self.fields is not None:
            parts.append(",".join(self.fields))
        return documents.etag_of("|".join(parts).encode())


def verified_cursor(signer: TokenSigner, token: str | None) -> str | None:
    if token is None:
        return None
    try:
        return signer.verify(token)
    except InvalidCursor as exc:
        raise InvalidToken(str(exc), details={"parameter": "cursor"}) from None


def facets_json(facets: Facets, names: Sequence[str]) -> bytes:
    """The groups asked for (``FACET_NAMES``), with ``total`` always: the shape of ``schemas.FacetCounts``."""
    out: dict[str, Any] = {"total": facets.total}
    for name in names:
        if name == "in_stock":
            out["in_stock"] = {"true": facets.in_stock.get(True, 0), "false": facets.in_stock.get(False, 0)}
            continue
        values: list[FacetValue] = getattr(facets, name)
        out[name] = [{"key": v.key, "label": v.label, "count": v.count} for v in values]
        if name != "price":
            out[f"{name}_other"] = getattr(facets, f"{name}_other")
    return orjson.dumps(out)


async def page_response(
    request: Request,
    catalog: CatalogService,
    signer: TokenSigner,
    query: ProductQuery | None,
    view: View,
    facets: FacetRequest | None = None,
) -> Response:
    """One list page; ``query`` None is a query nothing can match (an empty page, zero counts)."""
    counted = b""
    if facets is not None:
        names, size = facets
        counts = await catalog.facets(query, size) if query is not None else Facets(total=0)
        counted = b',"facets":' + facets_json(counts, names)
    if query is None:
        body = b'{"items":[],"next_cursor":null' + counted + b"}"
        return json_with_etag(request, body, documents.etag_of(body))
    try:
        page = await catalog.list_page(query)
    except InvalidCursor as exc:
        raise InvalidToken(str(exc), details={"parameter": "cursor"}) from None
    items = [view.render(item) for item in page.items]
    next_cursor = signer.sign(page.next_cursor) if page.next_cursor else None
    body = b"".join((b'{"items":[', b",".join(items), b'],"next_cursor":', orjson.dumps(next_cursor), counted, b"}"))
    etag = view.etag(page.etag) if not counted else documents.etag_of(view.etag(page.etag).encode() + counted)
    return json_with_etag(request, body, etag)


def served_response(request: Request, served: Served, view: View) -> Response:
    headers = {"X-Data-Age": str(int(served.age_s))}
    if served.stale:
        headers["X-Data-Stale"] = "true"
    if served.timing is not None:
        headers["Server-Timing"] = server_timing(served.timing)
    return json_with_etag(request, view.render(served.product.doc), view.etag(served.product.etag), headers)


def server_timing(timing: MissTiming) -> str:
    """``miss``: the whole wait for the vendor's answer; ``queue``: the part before a worker or the job took it."""
    parts = [f'miss;dur={timing.total_s * 1000:.1f};desc="fetched from the vendor"']
    if timing.queued_s is not None:
        parts.append(f'queue;dur={timing.queued_s * 1000:.1f};desc="waiting for a worker"')
    return ", ".join(parts)
