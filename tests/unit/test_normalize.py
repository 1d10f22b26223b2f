from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app.domain.normalize import (
    brand_key,
    clean_text,
    gtin_check_digit,
    html_to_text,
    normalize_gtin,
    normalize_images,
    parse_currency,
    parse_datetime,
    parse_int,
    parse_price,
    sku_key,
)

# --- parse_price -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "default", "amount", "currency"),
    [
        # numbers
        (12, "USD", "12", "USD"),
        (0, "EUR", "0", "EUR"),
        (9.99, "USD", "9.99", "USD"),
        (0.1, "USD", "0.1", "USD"),
        (19.9, "EUR", "19.9", "EUR"),
        (1234567.89, "USD", "1234567.89", "USD"),
        (Decimal("12.340"), "USD", "12.340", "USD"),
        (12, "usd", "12", "USD"),
        # plain strings
        ("12.5", "USD", "12.5", "USD"),
        ("1299.99", "USD", "1299.99", "USD"),
        ("  7 ", "USD", "7", "USD"),
        ("0.50", "USD", "0.50", "USD"),
        ("12.50", "EUR", "12.50", "EUR"),
        ("12,5", "EUR", "12.5", "EUR"),
        ("1.495", "TRY", "1495", "TRY"),
        ("1,299", "USD", "1299", "USD"),
        ("1.495,00", "EUR", "1495.00", "EUR"),
        ("1,299.99", "USD", "1299.99", "USD"),
        ("1.234.567", "EUR", "1234567", "EUR"),
        ("1,234,567.5", "USD", "1234567.5", "USD"),
        ("1.234.567,89", "EUR", "1234567.89", "EUR"),
        ("1.2345", "USD", "1.2345", "USD"),
        # symbols and codes before or after
        ("$1,299.99", "USD", "1299.99", "USD"),
        ("$1,299.99", "EUR", "1299.99", "USD"),
        ("€12,50", "USD", "12.50", "EUR"),
        ("12,50 €", "USD", "12.50", "EUR"),
        ("12,50€", "USD", "12.50", "EUR"),
        ("₺1.495", "USD", "1495", "TRY"),
        ("₺1.495,00", "USD", "1495.00", "TRY"),
        ("1.495 TL", "USD", "1495", "TRY"),
        ("1 299,99 €", "USD", "1299.99", "EUR"),
        ("1\u00a0299,99\u00a0€", "USD", "1299.99", "EUR"),
        ("1\u202f299,99\u202f€", "USD", "1299.99", "EUR"),
        ("1 234 567 €", "USD", "1234567", "EUR"),
        ("EUR 12.50", "USD", "12.50", "EUR"),
        ("12.50 EUR", "USD", "12.50", "EUR"),
        ("12.50EUR", "USD", "12.50", "EUR"),
        ("eur 12.50", "USD", "12.50", "EUR"),
        ("£3", "USD", "3", "GBP"),
        ("£3", "GIP", "3", "GIP"),
        ("¥1,200", "USD", "1200", "JPY"),
        ("¥1,200", "CNY", "1200", "CNY"),
        ("￥1,200", "USD", "1200", "JPY"),
        ("R$ 1.234,56", "USD", "1234.56", "BRL"),
        ("CHF 1'234.50", "USD", "1234.50", "CHF"),
        ("CHF 1’234.50", "USD", "1234.50", "CHF"),
        ("₹1,23,456.78", "USD", "123456.78", "INR"),
        ("₹12,34,56,789", "USD", "123456789", "INR"),
        ("12,99 zł", "EUR", "12.99", "PLN"),
        ("99 kr", "SEK", "99", "SEK"),
        ("99,50 kr", "NOK", "99.50", "NOK"),
        ("kr. 1.299,00", "DKK", "1299.00", "DKK"),
        ("US$ 5", "CAD", "5", "USD"),
        ("US$5", "USD", "5", "USD"),
        ("$5", "CAD", "5", "CAD"),
        ("$5", "AUD", "5", "AUD"),
        ("$5", "MXN", "5", "MXN"),
        ("$5", "EUR", "5", "USD"),
        ("CA$5", "USD", "5", "CAD"),
        ("₩12,000", "USD", "12000", "KRW"),
        # three minor digits: a single separator before three digits is the decimal point
        ("1.495", "BHD", "1.495", "BHD"),
        ("KWD 1,234", "USD", "1.234", "KWD"),
        ("12.500 OMR", "USD", "12.500", "OMR"),
        ("1,234.567", "JOD", "1234.567", "JOD"),
        # a space-grouped number makes a single separator the decimal point
        ("1 234,567 €", "USD", "1234.567", "EUR"),
    ],
)
def test_parse_price(value: object, default: str, amount: str, currency: str) -> None:
    result = parse_price(value, default)
    assert result == (Decimal(amount), currency)
    assert str(result[0]) == amount  # the scale is kept as written


def test_parse_price_float_is_exact() -> None:
    assert parse_price(9.99, "USD") == (Decimal("9.99"), "USD")
    assert str(parse_price(9.99, "USD")[0]) == "9.99"  # not 9.9900000000000002131628...
    assert parse_price(1.1, "EUR") == (Decimal("1.1"), "EUR")


def test_parse_price_zero_is_never_negative() -> None:
    for zero in (-0.0, Decimal("-0"), "0"):
        amount, _ = parse_price(zero, "USD")
        assert amount == 0
        assert not amount.is_signed()


@pytest.mark.parametrize(
    ("value", "default", "message"),
    [
        (None, "USD", "not a price"),
        (True, "USD", "not a price"),
        (False, "USD", "not a price"),
        ([1], "USD", "not a price"),
        ({"amount": 1}, "USD", "not a price"),
        ("", "USD", "no number"),
        ("   ", "USD", "no number"),
        ("abc", "USD", "no number"),
        ("NaN", "USD", "no number"),
        ("inf", "USD", "no number"),
        ("$", "USD", "no number"),
        (-1, "USD", "negative"),
        (-0.01, "USD", "negative"),
        (Decimal("-5"), "USD", "negative"),
        ("-5", "USD", "negative"),
        ("−5", "USD", "negative"),
        ("$-5", "USD", "negative"),
        ("-$5", "USD", "negative"),
        ("5 €-", "USD", "negative"),
        (float("nan"), "USD", "finite"),
        (float("inf"), "USD", "finite"),
        (float("-inf"), "USD", "finite"),
        (Decimal("NaN"), "USD", "finite"),
        (Decimal("sNaN"), "USD", "finite"),
        (Decimal("Infinity"), "USD", "finite"),
        ("12 and 13", "USD", "more than one number"),
        ("10-20", "USD", "more than one number"),
        ("1e5", "USD", "more than one number"),
        ("12 EUR 13", "USD", "more than one number"),
        ("1,2,3", "USD", "grouping"),
        ("1,234,56", "USD", "grouping"),
        ("12 5", "USD", "grouping"),
        ("1.234 567", "USD", "decimal separator"),
        ("1234,567,890", "USD", "grouping"),
        ("1.234,5.6", "USD", "decimal separator"),
        ("1,234.56,7", "USD", "decimal separator"),
        ("99 kr", "EUR", "ambiguous"),
        ("Rs 500", "USD", "ambiguous"),
        ("$5 EUR", "USD", "conflicting"),
        ("5 XYZ", "USD", "ISO 4217"),
        ("5", "XYZ", "ISO 4217"),
        ("price: 5", "USD", "unrecognised"),
        ("(5)", "USD", "unrecognised"),
        ("5 dollars", "USD", "unrecognised"),
    ],
)
def test_parse_price_rejects(value: object, default: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_price(value, default)


def test_parse_price_explicit_currency_needs_no_valid_default() -> None:
    assert parse_price("EUR 5", "") == (Decimal("5"), "EUR")


def test_parse_price_round_trips_formatted_amounts() -> None:
    rng = random.Random(4217)
    for _ in range(500):
        amount = Decimal(rng.randrange(1_000, 10**10)).scaleb(-2)
        whole, cents = f"{amount:.2f}".split(".")
        us = f"{int(whole):,}.{cents}"
        de = us.replace(",", " ").replace(".", ",").replace(" ", ".")
        fr = us.replace(",", "\u202f").replace(".", ",")
        assert parse_price(f"${us}", "USD") == (amount, "USD")
        assert parse_price(f"{de} €", "USD") == (amount, "EUR")
        assert parse_price(f"{fr} €", "USD") == (amount, "EUR")
        assert parse_price(float(f"{amount}"), "USD") == (amount, "USD")


# --- parse_currency ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected"),
    [("USD", "USD"), ("eur", "EUR"), (" try ", "TRY"), ("Bhd", "BHD"), ("XOF", "XOF"), ("JPY", "JPY")],
)
def test_parse_currency(code: object, expected: str) -> None:
    assert parse_currency(code) == expected


@pytest.mark.parametrize("code", ["XYZ", "usd1", "", "US", "USDD", "XXX", "XTS", None, 840, "€"])
def test_parse_currency_rejects(code: object) -> None:
    with pytest.raises(ValueError, match="ISO 4217"):
        parse_currency(code)


# --- GTIN --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "check"),
    [("400638133393", 1), ("03600029145", 2), ("9638507", 4), ("1001234567890", 2), ("0", 0)],
)
def test_gtin_check_digit(body: str, check: int) -> None:
    assert gtin_check_digit(body) == check


@pytest.mark.parametrize("body", ["", "12a4", "１２３", "12 34", "-123"])
def test_gtin_check_digit_rejects_non_digits(body: str) -> None:
    with pytest.raises(ValueError):
        gtin_check_digit(body)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("96385074", "00000096385074"),  # GTIN-8
        ("036000291452", "00036000291452"),  # UPC-A
        ("4006381333931", "04006381333931"),  # EAN-13
        ("10012345678902", "10012345678902"),  # GTIN-14
        ("0036000291452", "00036000291452"),  # UPC-A as EAN-13
        ("00036000291452", "00036000291452"),
        ("00000096385074", "00000096385074"),
        (4006381333931, "04006381333931"),
        (10012345678902, "10012345678902"),
        (96385074, "00000096385074"),
        (" 4006381 333931 ", "04006381333931"),
        ("0-36000-29145-2", "00036000291452"),
        ("400-6381-33393-1", "04006381333931"),
    ],
)
def test_normalize_gtin(value: object, expected: str) -> None:
    assert normalize_gtin(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        True,
        4.006381333931e12,
        "4006381333932",  # check digit off by one
        "4006381333930",
        "036000291453",
        "96385075",
        "10012345678903",
        "4006381333391",  # transposed digits
        36000291452,  # an int lost the UPC's leading zero: not padded back
        -4006381333931,
        "12345",
        "1234567890",  # 10 digits: no such GTIN
        "400638133393100",  # 15 digits
        "40063813339a1",
        "４００６３８１３３３９３１",  # full-width digits
        "00000000",  # all-zero placeholder
        "00000000000000",
    ],
)
def test_normalize_gtin_rejects(value: object) -> None:
    assert normalize_gtin(value) is None


def test_gtin_property_check_digit_catches_single_digit_errors() -> None:
    rng = random.Random(1)
    for _ in range(1000):
        body = "".join(rng.choice("0123456789") for _ in range(12))
        code = body + str(gtin_check_digit(body))
        if not code.strip("0"):
            continue
        assert normalize_gtin(code) == code.zfill(14)
        position = rng.randrange(len(code))
        wrong = rng.choice([d for d in "0123456789" if d != code[position]])
        assert normalize_gtin(code[:position] + wrong + code[position + 1 :]) is None


@pytest.mark.parametrize("length", [8, 12, 13, 14])
def test_gtin_property_padding_does_not_change_identity(length: int) -> None:
    rng = random.Random(length)
    for _ in range(200):
        body = str(rng.randrange(1, 10 ** (length - 1))).zfill(length - 1)
        code = body + str(gtin_check_digit(body))
        for spelled in (code, code.zfill(14), "-".join(code)):
            assert normalize_gtin(spelled) == code.zfill(14)


# --- html_to_text ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, ""),
        ("", ""),
        ("   ", ""),
        ("<p></p>", ""),
        ("<p>Hello <b>world</b></p>", "Hello world"),
        ("<p>One</p><p>Two</p>", "One\n\nTwo"),
        ("<p>One</p>\n\n   \n<p>Two</p>", "One\n\nTwo"),
        ("<p>Tom &amp; Jerry &lt;3 &eacute;t&#233; &#x263A;</p>", "Tom & Jerry <3 été ☺"),
        ("<p>a&nbsp;&nbsp;b</p>", "a b"),
        ("<p>  lots   of\n\t space  </p>", "lots of space"),
        ("Line one<br>Line two<br/>Line three", "Line one\nLine two\nLine three"),
        ("Para one<br><br>Para two", "Para one\n\nPara two"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("<h1>Title</h1><p>Body</p>", "Title\n\nBody"),
        ("<ul><li>One</li><li>Two</li></ul>", "- One\n- Two"),
        (
            "<p>Intro</p><ol>\n  <li>First</li>\n  <li>Second</li>\n</ol><p>Outro</p>",
            "Intro\n\n- First\n- Second\n\nOutro",
        ),
        (
            "<ul><li>Fruit<ul><li>Apple</li><li>Pear</li></ul></li><li>Veg</li></ul>",
            "- Fruit\n- Apple\n- Pear\n- Veg",
        ),
        ("<ul><li><p>Wrapped</p></li><li></li><li>Next</li></ul>", "- Wrapped\n- Next"),
        (
            "<p>Keep</p><script>alert('x <p>no</p>')</script><style>p { color: red }</style><p>Going</p>",
            "Keep\n\nGoing",
        ),
        ("<html><head><title>Page</title></head><body><p>Body</p></body></html>", "Body"),
        ("<!-- comment --><p>x</p>", "x"),
        ("<table><tr><th>Size</th><td>XL</td></tr><tr><th>Colour</th><td>Red</td></tr></table>", "Size XL\nColour Red"),
        ("<blockquote>Quoted</blockquote>After", "Quoted\n\nAfter"),
        ("<section><article><p>Deep</p></article></section>", "Deep"),
        ("<p>unclosed <i>tags", "unclosed tags"),
        ("<P>Upper</P><BR>case", "Upper\n\ncase"),
        ("Text <span>inline</span> only", "Text inline only"),
        ("<p>a</p><hr><p>b</p>", "a\n\nb"),
        # plain text passes through: its own newlines are kept, blank-line runs shrink to one
        ("Plain text", "Plain text"),
        ("  Plain   text  \n  second line ", "Plain text\nsecond line"),
        ("First para\n\n\n\nSecond para\r\n", "First para\n\nSecond para"),
        ("Fish &amp; chips", "Fish & chips"),
        ("a < b and c > d", "a < b and c > d"),
    ],
)
def test_html_to_text(value: str | None, expected: str) -> None:
    assert html_to_text(value) == expected


def test_html_to_text_output_shape() -> None:
    text = html_to_text(
        "<div>\n<h2> Specs </h2>\n<ul>\n<li> A </li>\n</ul>\n<p>\n</p>\n<br>\n<p> B </p>\n<br><br><br></div>"
    )
    assert text == "Specs\n\n- A\n\nB"
    for line in text.split("\n"):
        assert line == line.strip()
        assert "  " not in line
    assert "\n\n\n" not in text


# --- normalize_images --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("urls", "base_url", "expected"),
    [
        ([], None, ()),
        (
            ["https://cdn.example/a.png", "http://cdn.example/b.jpg"],
            None,
            ("https://cdn.example/a.png", "http://cdn.example/b.jpg"),
        ),
        ([None, "", "  ", 42, {"src": "x"}, "data:image/png;base64,AAAA", "DATA:image/gif;base64,R0"], None, ()),
        (["  https://cdn.example/a.png\n"], None, ("https://cdn.example/a.png",)),
        (["//cdn.example/x.png"], None, ("https://cdn.example/x.png",)),
        (["//cdn.example/x.png"], "http://shop.example/", ("https://cdn.example/x.png",)),
        (
            ["/img/a.png", "b.png"],
            "https://shop.example/products/",
            ("https://shop.example/img/a.png", "https://shop.example/products/b.png"),
        ),
        (["/img/a.png", "b.png"], None, ()),
        (["ftp://files.example/a.png", "javascript:alert(1)", "mailto:x@y.z", "https:///nohost.png"], None, ()),
        (["http://[::1"], None, ()),
        (
            [
                "https://cdn.example/a.png",
                "HTTPS://CDN.EXAMPLE/a.png",
                "https://cdn.example/a.png#zoom",
                "https://cdn.example/A.png",
            ],
            None,
            ("https://cdn.example/a.png", "https://cdn.example/A.png"),
        ),
        (
            ["https://cdn.example/a.png?w=1", "https://cdn.example/a.png?w=2"],
            None,
            ("https://cdn.example/a.png?w=1", "https://cdn.example/a.png?w=2"),
        ),
        (["HTTPS://CDN.example/a.png", "https://cdn.example/a.png"], None, ("HTTPS://CDN.example/a.png",)),
        (["/a.png", "https://shop.example/a.png"], "https://shop.example", ("https://shop.example/a.png",)),
        (iter(["https://x.example/1", "https://x.example/2"]), None, ("https://x.example/1", "https://x.example/2")),
        ("https://x.example/solo.png", None, ("https://x.example/solo.png",)),
    ],
)
def test_normalize_images(urls: object, base_url: str | None, expected: tuple[str, ...]) -> None:
    assert normalize_images(urls, base_url) == expected  # type: ignore[arg-type]


# --- keys and text -----------------------------------------------------------------------------------------


def test_sku_key_matches_spelling_variants() -> None:
    variants = [
        "bea-ess-ess-001",
        "BEA ESS ESS 001",
        "BEA_ESS_ESS_001",
        " bea.ess/ess#001 ",
        "ＢＥＡ-ＥＳＳ-ＥＳＳ-００１",
    ]
    assert {sku_key(v) for v in variants} == {"BEAESSESS001"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("abc-123", "ABC123"), (12345, "12345"), ("", None), ("  - _ ", None), (None, None), (True, None), (1.5, None)],
)
def test_sku_key(value: object, expected: str | None) -> None:
    assert sku_key(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Nestlé", "nestle"),
        ("NESTLE", "nestle"),
        ("  nestle ", "nestle"),
        ("Crème Brûlée Co.", "cremebruleeco"),
        ("H&M", "hm"),
        ("Straße", "strasse"),
        ("Ｓｏｎｙ", "sony"),
        ("", None),
        ("  &  ", None),
        (None, None),
        (42, None),
    ],
)
def test_brand_key(value: object, expected: str | None) -> None:
    assert brand_key(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("  Red   Shirt\n XL ", "Red Shirt XL"),
        ("Plain", "Plain"),
        ("\u00a0Tabs\tand\u00a0nbsp\u00a0", "Tabs and nbsp"),
        ("", None),
        ("   \n ", None),
        ("\uffd0", None),  # an unassigned code point, found by the mapper fuzzer as a whole title
        ("Phone\u200bX\ue000 \x00Pro", "Phone X Pro"),  # format, private-use and control characters
        (None, None),
        (12, None),
        (["x"], None),
    ],
)
def test_clean_text(value: object, expected: str | None) -> None:
    assert clean_text(value) == expected


# --- parse_datetime and parse_int --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2011-10-20T14:05:13Z", datetime(2011, 10, 20, 14, 5, 13, tzinfo=UTC)),
        ("2011-10-20T14:05:13-04:00", datetime(2011, 10, 20, 18, 5, 13, tzinfo=UTC)),
        ("2011-10-20T14:05:13+05:30", datetime(2011, 10, 20, 8, 35, 13, tzinfo=UTC)),
        ("2017-03-22T16:28:02", datetime(2017, 3, 22, 16, 28, 2, tzinfo=UTC)),  # WooCommerce *_gmt
        ("2017-03-22 16:28:02.123456", datetime(2017, 3, 22, 16, 28, 2, 123456, tzinfo=UTC)),
        (" 2020-01-01T00:00:00Z ", datetime(2020, 1, 1, tzinfo=UTC)),
        ("2020-01-01", datetime(2020, 1, 1, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (1_700_000_000, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
        (datetime(2020, 1, 1, 12), datetime(2020, 1, 1, 12, tzinfo=UTC)),
        (datetime(2020, 1, 1, 12, tzinfo=timezone(timedelta(hours=2))), datetime(2020, 1, 1, 10, tzinfo=UTC)),
    ],
)
def test_parse_datetime(value: object, expected: datetime) -> None:
    result = parse_datetime(value)
    assert result == expected
    assert result is not None
    assert result.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        "2020-13-01",
        "2020-02-30T00:00:00Z",
        "0001-01-01T00:00:00+01:00",
        True,
        10**20,
        float("nan"),
        [],
        {},
    ],
)
def test_parse_datetime_never_raises(value: object) -> None:
    assert parse_datetime(value) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (3, 3),
        (0, 0),
        (-2, -2),
        (3.0, 3),
        ("42", 42),
        (" 42 ", 42),
        ("-3", -3),
        ("+7", 7),
        (Decimal("5"), 5),
        (Decimal("5.00"), 5),
        (3.5, None),
        (float("nan"), None),
        (float("inf"), None),
        (Decimal("5.5"), None),
        (Decimal("NaN"), None),
        ("4.0", None),
        ("1_000", None),
        ("٣", None),
        ("", None),
        ("x", None),
        (True, None),
        (False, None),
        (None, None),
        ([1], None),
    ],
)
def test_parse_int(value: object, expected: int | None) -> None:
    assert parse_int(value) == expected
