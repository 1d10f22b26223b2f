"""Turning raw vendor values into canonical ones.

Every adapter funnels its JSON through these functions, so vendors differ only in *where* a value lives, never
in how it is interpreted: a price, a barcode or a description means the same thing whichever API it came from.
Standard library only, so the domain stays importable by the embedded workers, the Flink job and the tests
alike. Parsers that guard required fields (``parse_price``, ``parse_currency``) raise ``ValueError`` so the
item is skipped with a reason; the others return ``None`` (or an empty value) because a missing barcode or
date must never cost us the offer.
"""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

# Active ISO 4217 currencies. Fund codes (BOV, CHE, USN, ...), precious metals, SDR/bond units and the
# test/no-currency codes (XTS, XXX) are left out on purpose: nothing is ever sold in them, so a vendor sending
# one is a data error we want to surface. ANG and XCG are both listed while the Caribbean guilder transition
# runs.
# fmt: off
_ISO_4217 = frozenset({
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY",
    "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP",
    "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR",
    "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
    "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK",
    "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD",
    "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD",
    "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
})

# Currencies with three minor digits: for them "1.495" is one and a half dinars, not fifteen hundred.
_THREE_MINOR_DIGITS = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

_DOLLARS = frozenset({
    "USD", "CAD", "AUD", "NZD", "SGD", "HKD", "MXN", "TWD", "ARS", "CLP", "COP", "CUP", "DOP", "UYU", "BSD",
    "BBD", "BZD", "BMD", "BND", "KYD", "FJD", "GYD", "JMD", "LRD", "NAD", "SBD", "SRD", "TTD", "XCD",
})
# fmt: on

# Markers that name exactly one currency. Keys are case-folded with spaces removed.
_SYMBOLS = {
    "us$": "USD",
    "€": "EUR",
    "₺": "TRY",
    "tl": "TRY",
    "r$": "BRL",
    "₹": "INR",
    "zł": "PLN",
    "₩": "KRW",
    "₽": "RUB",
    "₴": "UAH",
    "₪": "ILS",
    "₫": "VND",
    "฿": "THB",
    "₱": "PHP",
    "₦": "NGN",
    "₸": "KZT",
    "₼": "AZN",
    "₾": "GEL",
    "kč": "CZK",
    "ft": "HUF",
    "lei": "RON",
    "r": "ZAR",
    "ca$": "CAD",
    "a$": "AUD",
    "au$": "AUD",
    "nz$": "NZD",
    "hk$": "HKD",
    "s$": "SGD",
    "sg$": "SGD",
    "mx$": "MXN",
    "nt$": "TWD",
    "cn¥": "CNY",
    "元": "CNY",
    "jp¥": "JPY",
    "円": "JPY",
}

# Markers shared by several currencies: the vendor's own currency wins when it is one of them, otherwise the
# conventional reading applies, or the price is refused when there is none ("kr" could be four currencies).
_SHARED_SYMBOLS: dict[str, tuple[str | None, frozenset[str]]] = {
    "$": ("USD", _DOLLARS),
    "c$": ("CAD", frozenset({"CAD", "NIO"})),
    "¥": ("JPY", frozenset({"JPY", "CNY"})),
    "£": ("GBP", frozenset({"GBP", "GIP", "FKP", "SHP"})),
    "kr": (None, frozenset({"SEK", "NOK", "DKK", "ISK"})),
    "kr.": (None, frozenset({"SEK", "NOK", "DKK", "ISK"})),
    "rs": (None, frozenset({"INR", "PKR", "LKR", "NPR", "MUR", "SCR"})),
    "rs.": (None, frozenset({"INR", "PKR", "LKR", "NPR", "MUR", "SCR"})),
}

#: Above this no amount is a price (a 70-digit "price" is a vendor bug or an attack); at most this many decimals.
MAX_PRICE = Decimal(10) ** 12
MAX_PRICE_DECIMALS = 6

# Digit groups joined by single separators; spaces only count when a digit follows, so "12.50 EUR" splits.
_NUMBER = re.compile(r"[0-9]+(?:[.,' ][0-9]+)*")
_SEPARATOR = re.compile(r"[.,' ]")


#: The codes ``parse_currency`` knows (the API's schema lists them).
ISO_4217 = _ISO_4217


def parse_currency(code: object) -> str:
    """Upper-case and validate, so every stored currency can be compared and grouped by plain equality."""
    if isinstance(code, str) and (upper := code.strip().upper()) in _ISO_4217:
        return upper
    raise ValueError(f"not an ISO 4217 currency code: {code!r}")


def parse_price(value: object, default_currency: str) -> tuple[Decimal, str]:
    """Return the exact amount and its currency; raise ``ValueError`` for anything that is not a price.

    Floats go through ``repr`` so 9.99 stays 9.99 rather than its binary approximation. In strings a currency
    code or symbol before or after the number beats ``default_currency``; a bare "$" or "¥" means the
    vendor's own currency when it is written that way, and "kr" is refused unless it is.

    Separators, since vendors format prices for their own locale:

    * spaces (also no-break ones) and apostrophes only ever group digits ("1 299,99", "1'234.50");
    * when both '.' and ',' appear, the last one is the decimal separator ("1.495,00", "1,299.99");
    * when only one of them appears more than once, it groups digits ("1.234.567", Indian "1,23,456");
    * when it appears once, it groups digits if exactly three follow ("1.495" is 1495) unless the currency
      has three minor digits (BHD, KWD, ...) or the number is already grouped by spaces or apostrophes;
      otherwise it is the decimal separator ("12,5", "12.50").

    Grouping must be regular (threes, or Indian twos then a three), and the scale is kept as written.
    """
    if isinstance(value, str):
        amount, currency = _parse_price_text(value, default_currency)
    else:
        currency = parse_currency(default_currency)
        if isinstance(value, Decimal):
            amount = value
        elif isinstance(value, int) and not isinstance(value, bool):
            amount = Decimal(value)
        elif isinstance(value, float):
            amount = Decimal(repr(value))
        else:
            raise ValueError(f"not a price: {value!r}")
    if not amount.is_finite():
        raise ValueError(f"price is not a finite number: {_short(value)}")
    if amount < 0:
        raise ValueError(f"price is negative: {_short(value)}")
    if amount >= MAX_PRICE:
        raise ValueError(f"price out of range: {_short(value)}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_PRICE_DECIMALS:
        raise ValueError(f"price has more than {MAX_PRICE_DECIMALS} decimals: {_short(value)}")
    if isinstance(exponent, int) and exponent > 0:
        amount = amount.quantize(Decimal(1))  # 1E+2 is stored as 100: every stored price is plain decimal text
    return amount.copy_abs(), currency  # copy_abs turns -0 into 0


def _short(value: object) -> str:
    """A vendor value for a skip reason: bounded, whatever the vendor sent."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _parse_price_text(value: str, default_currency: str) -> tuple[Decimal, str]:
    if len(value) > 64:
        raise ValueError(f"price text too long: {_short(value)}")
    text = unicodedata.normalize("NFKC", value).replace("’", "'").strip()  # NFKC: no-break spaces -> " "
    numbers = list(_NUMBER.finditer(text))
    if len(numbers) != 1:
        raise ValueError(f"{'no' if not numbers else 'more than one'} number in price {value!r}")
    number = numbers[0]
    markers = [m for m in (text[: number.start()].strip(), text[number.end() :].strip()) if m]
    if any(sign in marker for marker in markers for sign in "-−"):
        raise ValueError(f"price is negative: {value!r}")
    default = default_currency.strip().upper()
    currencies = {_currency_of(marker, default, value) for marker in markers}
    if len(currencies) > 1:
        raise ValueError(f"conflicting currencies in price {value!r}")
    currency = parse_currency(currencies.pop() if currencies else default)
    return _parse_number(number.group(), currency, value), currency


def _currency_of(marker: str, default: str, value: str) -> str:
    key = "".join(marker.split()).casefold()
    if key in _SYMBOLS:
        return _SYMBOLS[key]
    if key in _SHARED_SYMBOLS:
        fallback, family = _SHARED_SYMBOLS[key]
        if default in family:
            return default
        if fallback is None:
            raise ValueError(f"ambiguous currency {marker!r} in price {value!r}")
        return fallback
    if len(key) == 3 and key.isalpha():
        return parse_currency(marker)
    raise ValueError(f"unrecognised text {marker!r} in price {value!r}")


def _parse_number(number: str, currency: str, value: str) -> Decimal:
    groups = _SEPARATOR.split(number)
    separators = _SEPARATOR.findall(number)
    marks = [s for s in separators if s in ".,"]
    decimal: str | None = None
    if len(set(marks)) == 2:
        decimal = marks[-1]
    elif len(marks) == 1:
        already_grouped = len(separators) > 1  # by spaces or apostrophes
        if already_grouped or len(groups[-1]) != 3 or currency in _THREE_MINOR_DIGITS:
            decimal = marks[0]
    fraction = ""
    if decimal is not None:
        if separators[-1] != decimal or separators.count(decimal) != 1:
            raise ValueError(f"misplaced decimal separator in price {value!r}")
        fraction = "." + groups.pop()
        separators.pop()
    if len(set(separators)) > 1 or (separators and not _regular_grouping(groups)):
        raise ValueError(f"irregular digit grouping in price {value!r}")
    return Decimal("".join(groups) + fraction)


def _regular_grouping(groups: list[str]) -> bool:
    head, *middle, last = groups
    if len(last) != 3:
        return False
    if all(len(g) == 3 for g in middle):
        return 1 <= len(head) <= 3
    return all(len(g) == 2 for g in middle) and 1 <= len(head) <= 2  # Indian lakh/crore grouping


def gtin_check_digit(body: str) -> int:
    """GS1 mod-10 over the digits before the check digit.

    Weights run 3, 1, 3, ... from the right, so left zero-padding never changes the result and every GTIN
    length shares one algorithm.
    """
    if not (body.isascii() and body.isdigit()):
        raise ValueError(f"GTIN body must be digits: {body!r}")
    digits = body.encode()  # byte values are digit + 48: sum the bytes, then take the 48s back out in one go
    total = 3 * sum(digits[-1::-2]) + sum(digits[-2::-2]) - 48 * (3 * len(digits[-1::-2]) + len(digits[-2::-2]))
    return -total % 10


def normalize_gtin(value: object) -> str | None:
    """Return a check-digit-valid GTIN-14, else ``None``.

    The GTIN is the strongest cross-vendor match key, so anything doubtful is dropped rather than repaired:
    a wrong check digit is never fixed, an int that lost its leading zeros is not padded back to a valid
    length, and the all-zero placeholder some shops send is refused (it would merge unrelated products).
    """
    if isinstance(value, str):
        text = re.sub(r"[\s-]", "", value)
    elif isinstance(value, int) and not isinstance(value, bool):
        text = str(value)
    else:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) not in (8, 12, 13, 14) or not text.strip("0"):
        return None
    if gtin_check_digit(text[:-1]) != int(text[-1]):
        return None
    return text.zfill(14)


_SKIPPED_TAGS = frozenset({"script", "style", "head", "template", "noscript"})
_LIST_TAGS = frozenset({"ul", "ol"})
# Line breaks owed around each block element: 2 leaves a blank line (a paragraph), 1 starts a new line.
# fmt: off
_BLOCK_TAGS = {
    **dict.fromkeys(("div", "li", "tr", "dt", "dd"), 1),
    **dict.fromkeys(
        (
            "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "section", "article", "table",
            "hr", "pre", "header", "footer", "aside", "nav", "main", "figure", "dl", "address",
        ),
        2,
    ),
}
# fmt: on
_TAG = re.compile(r"</?[a-zA-Z][^<>]*>|<!--")
_WHITESPACE = re.compile(r"\s+")


class _TextExtractor(HTMLParser):
    """Collects text, deferring line breaks until the next real text so stray whitespace between tags can't
    turn into blank lines and nothing leads or trails."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._pending = 0
        self._bullet = False
        self._skipping = 0
        self._lists = 0

    def _break(self, level: int) -> None:
        # Paragraph-level elements inside a list only start a line, so lists stay compact.
        self._pending = max(self._pending, 1 if self._lists else level)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping += 1
        elif tag == "br":
            self._pending = min(self._pending + 1, 2)  # <br><br> is the poor man's paragraph
        elif tag in ("td", "th"):
            self.handle_data(" ")
        elif tag in _BLOCK_TAGS:
            self._break(_BLOCK_TAGS[tag])
            if tag == "li":
                self._bullet = True
        if tag in _LIST_TAGS:
            self._lists += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            self._skipping = max(self._skipping - 1, 0)
        if tag in _LIST_TAGS:
            self._lists = max(self._lists - 1, 0)
        if tag in _BLOCK_TAGS:
            self._break(_BLOCK_TAGS[tag])
        if tag == "li":
            self._bullet = False  # an empty item leaves no dangling bullet

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if not data.strip():
            if self.parts and not self._pending:
                self.parts.append(" ")
            return
        if self.parts and self._pending:
            self.parts.append("\n" * self._pending)
        if self._bullet:
            self.parts.append("- ")
        self._pending, self._bullet = 0, False
        self.parts.append(_WHITESPACE.sub(" ", data))


def _tidy_lines(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def html_to_text(value: str | None) -> str:
    """Render an HTML description as plain text for search, snippets and clients that can't show HTML.

    Output shape: paragraphs separated by one blank line, line-level blocks (``<br>``, ``<div>``, ``<li>``,
    ``<tr>``) on their own lines, list items prefixed "- ", whitespace collapsed. Text without tags is taken
    as already plain: its newlines are kept as written (blank-line runs shrink to one blank line) instead of
    being collapsed the way HTML would.
    """
    if not value:
        return ""
    value = strip_controls(value, keep_lines=True)
    if not _TAG.search(value):
        return _tidy_lines(html.unescape(value))
    parser = _TextExtractor()
    parser.feed(value)
    parser.close()
    return _tidy_lines("".join(parser.parts))


# scheme, host[:port], then the rest; only plain hosts (no userinfo, brackets or odd characters) take this path.
_ABSOLUTE_URL = re.compile(r"(?i)(https?)://([a-z0-9.-]+(?::[0-9]{1,5})?)((?:[/?#][^\s]*)?)$")


def normalize_images(urls: Iterable[object], base_url: str | None = None) -> tuple[str, ...]:
    """Absolute http(s) image URLs, in the vendor's order, without duplicates.

    ``data:`` URIs are dropped because they would bloat every response, and anything we can't make absolute
    is dropped because clients could not load it. Duplicates are judged ignoring the case of scheme and host
    and any fragment, since those never change the image; the first spelling is kept.
    """
    if isinstance(urls, str):  # one URL where a list was expected: don't iterate its characters
        urls = (urls,)
    seen: set[tuple[str, str, str, str]] = set()
    images: list[str] = []
    for raw in urls:
        if not isinstance(raw, str) or not (url := raw.strip()) or url[:5].lower() == "data:":
            continue
        if len(url) > MAX_URL_CHARS or not url.isprintable():
            continue
        fast = _ABSOLUTE_URL.match(url)
        if fast is not None:  # the usual absolute URL: skip urllib, which cost most of a whole item's mapping
            scheme, host, rest = fast.groups()
            path_query = rest.split("#", 1)[0]
            fast_key = (scheme.lower(), host.lower(), path_query, "")
            if fast_key not in seen:
                seen.add(fast_key)
                images.append(url)
            continue
        try:
            if url.startswith("//"):
                url = "https:" + url
            elif base_url:
                url = urljoin(base_url, url)
            parts = urlsplit(url)
        except ValueError:
            continue
        path_query = parts.path + ("?" + parts.query if parts.query else "")
        key = (parts.scheme.lower(), parts.netloc.lower(), path_query, "")
        if key[0] in ("http", "https") and parts.hostname and key not in seen:
            seen.add(key)
            images.append(url)
    return tuple(images)


_NON_ALNUM_ASCII = re.compile(r"[^0-9A-Za-z]+")


def strip_controls(text: str, *, keep_lines: bool = False) -> str:
    """Text that prints: C0/C1 controls, lone surrogates, format characters, private-use and unassigned code points
    go (a NUL breaks PostgreSQL's text, the rest break terminals, JSON or a shopper's screen; the fuzzer found an
    unassigned one, U+FFD0, as a whole title). Single-line text gets a space for each, so words stay apart; with
    ``keep_lines`` tab and newline stay, other spaces become a space and the rest go. A cheap check first: almost
    every vendor string prints as it is."""
    if text.isprintable():
        return text
    kept = "\n\t" if keep_lines else ""
    out: list[str] = []
    for char in text:
        if char.isprintable() or char in kept:
            out.append(char)
        elif not keep_lines or char.isspace():
            out.append(" ")
    return "".join(out)


def sku_key(sku: object) -> str | None:
    """Vendors re-type the same SKU with different case, dashes, spaces or underscores; the key ignores them.

    Ints are accepted because some feeds send numeric SKUs as JSON numbers; other types are not SKUs.
    """
    if isinstance(sku, bool) or not isinstance(sku, str | int):
        return None
    text = str(sku)
    if text.isascii():  # the common case, and ten times cheaper than the Unicode path
        return _NON_ALNUM_ASCII.sub("", text).upper() or None
    key = "".join(ch for ch in unicodedata.normalize("NFKC", text).upper() if ch.isalnum())
    return key or None


def brand_key(brand: object) -> str | None:
    """Match "Nestlé", "NESTLE" and "Nestle S.A."-style spellings of one brand; also used for categories.

    NFKD splits accented letters into base letter plus combining mark, and combining marks are not
    alphanumeric, so the alphanumeric filter drops accents together with punctuation and spaces.
    """
    if not isinstance(brand, str):
        return None
    return _brand_key(brand)


@functools.lru_cache(maxsize=4096)
def _brand_key(brand: str) -> str | None:
    """Cached: a catalog has few distinct brands and categories, seen once per offer."""
    if brand.isascii():
        return _NON_ALNUM_ASCII.sub("", brand).lower() or None
    key = "".join(ch for ch in unicodedata.normalize("NFKD", brand.casefold()) if ch.isalnum())
    return key or None


def clean_text(value: object) -> str | None:
    """Single-line display text (titles, brands, categories): an empty string is as good as missing."""
    if not isinstance(value, str):
        return None
    return " ".join(strip_controls(value).split()) or None


#: Longest URL kept (offer links, images): browsers and CDNs stop around here too.
MAX_URL_CHARS = 2048


def normalize_url(value: object, base_url: str | None = None) -> str | None:
    """An absolute http(s) URL a client may open, or ``None``: ``javascript:``, ``data:`` and other schemes, URLs
    with control characters or spaces, user info, or over ``MAX_URL_CHARS`` are dropped, never "repaired"."""
    if not isinstance(value, str) or not (url := value.strip()) or len(url) > MAX_URL_CHARS:
        return None
    if not url.isprintable() or any(c.isspace() for c in url):
        return None
    try:
        if url.startswith("//"):
            url = "https:" + url
        elif base_url and "://" not in url[:12]:
            url = urljoin(base_url, url)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return url if len(url) <= MAX_URL_CHARS else None


def parse_datetime(value: object) -> datetime | None:
    """An aware UTC datetime, or ``None``: a bad timestamp must never cost us the offer.

    Naive values are taken as UTC because the fields we read without an offset (WooCommerce's ``*_gmt``)
    are UTC. Numbers are epoch seconds.
    """
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            value = datetime.fromisoformat(value.strip())
        if not isinstance(value, datetime):
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_int(value: object) -> int | None:
    """Stock counts arrive as ints, floats or strings depending on the vendor; ``True`` is not a count.

    A sign is allowed because Shopify reports oversold inventory as a negative quantity.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == value.to_integral_value() else None
    if isinstance(value, str) and re.fullmatch(r"[+-]?[0-9]+", value.strip()):
        return int(value)
    return None
