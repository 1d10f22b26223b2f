"""Currency conversion in exact decimals: vectors worked out by hand, so a float slipping in would show."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from app.domain.money import Rates, UnknownCurrency, convert, minor_units, parse_rates

D = Decimal

RATES = Rates(
    base="EUR",
    date=date(2026, 11, 20),
    rates={
        "EUR": D(1),
        "USD": D("1.25"),
        "TRY": D("40"),
        "GBP": D("0.8"),
        "JPY": D("160"),
        "KWD": D("0.333"),
    },
)


@pytest.mark.parametrize(
    ("amount", "src", "dst", "expected"),
    [
        (D("10.00"), "EUR", "USD", D("12.50")),
        (D("12.50"), "USD", "EUR", D("10.00")),
        (D("100"), "TRY", "EUR", D("2.50")),
        (D("1"), "EUR", "EUR", D("1.00")),
        (D("9.99"), "USD", "GBP", D("6.39")),  # 9.99 / 1.25 * 0.8 = 6.3936 exactly
        (D("100"), "USD", "TRY", D("3200.00")),  # through the base: 100 / 1.25 * 40
        (D("1"), "USD", "JPY", D("128")),  # JPY has no minor units
        (D("10"), "EUR", "KWD", D("3.330")),  # KWD has three
        (D("0.1"), "USD", "TRY", D("3.20")),  # 0.1 is exact in Decimal, 3.2000000000000006 in floats
    ],
)
def test_convert_known_vectors(amount: Decimal, src: str, dst: str, expected: Decimal) -> None:
    result = convert(RATES, amount, src, dst)
    assert result == expected
    assert result.as_tuple().exponent == -minor_units(dst)


def test_rounding_is_half_even_at_the_target_minor_unit() -> None:
    # Exact ties at the cent after conversion (0.125 and 0.135 EUR): half-even goes to the even cent.
    assert RATES.exact(D("0.15625"), "USD", "EUR") == D("0.125")
    assert convert(RATES, D("0.15625"), "USD", "EUR") == D("0.12")
    assert convert(RATES, D("0.16875"), "USD", "EUR") == D("0.14")
    assert convert(RATES, D("0.025"), "EUR", "EUR") == D("0.02")
    assert convert(RATES, D("0.015"), "EUR", "EUR") == D("0.02")
    assert convert(RATES, D("0.5"), "JPY", "JPY") == D("0")
    assert convert(RATES, D("1.5"), "JPY", "JPY") == D("2")
    assert convert(RATES, D("0.0025"), "KWD", "KWD") == D("0.002")
    assert convert(RATES, D("0.0035"), "KWD", "KWD") == D("0.004")


def test_minor_units() -> None:
    assert (minor_units("JPY"), minor_units("KWD"), minor_units("BHD"), minor_units("EUR")) == (0, 3, 3, 2)


def test_unknown_currency_raises() -> None:
    with pytest.raises(UnknownCurrency, match="CHF"):
        convert(RATES, D(1), "EUR", "CHF")
    with pytest.raises(UnknownCurrency):
        convert(RATES, D(1), "CHF", "EUR")
    with pytest.raises(UnknownCurrency):
        convert(RATES, D(1), "CHF", "CHF")


def test_parse_rates_keeps_decimals_exact_and_adds_the_base() -> None:
    rates = parse_rates(b'{"base": "eur", "date": "2026-11-20", "rates": {"USD": "1.0870", "JPY": 163.2}}')
    assert rates.base == "EUR" and rates.date == date(2026, 11, 20)
    assert rates.rates == {"EUR": D(1), "USD": D("1.0870"), "JPY": D("163.2")}


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"base": "EUR", "date": "2026-11-20"}',
        b'{"base": "XYZ", "date": "2026-11-20", "rates": {}}',
        b'{"base": "EUR", "date": "yesterday", "rates": {}}',
        b'{"base": "EUR", "date": "2026-11-20", "rates": {"USD": "lots"}}',
        b'{"base": "EUR", "date": "2026-11-20", "rates": {"USD": "-1"}}',
        b'{"base": "EUR", "date": "2026-11-20", "rates": {"EUR": "2"}}',
    ],
)
def test_parse_rates_refuses_bad_files(raw: bytes) -> None:
    with pytest.raises(ValueError):
        parse_rates(raw)


def test_packaged_rates_cover_the_simulator_currencies() -> None:
    from app.bootstrap import load_rates
    from app.settings import Settings

    rates = load_rates(Settings())
    assert rates.base == "EUR"
    assert all(rates.knows(c) for c in ("USD", "EUR", "TRY", "GBP", "JPY", "KWD"))
