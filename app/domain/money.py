"""Exchange rates and currency conversion, in exact decimals.

Prices are stored in the currency the vendor listed them in; conversion only happens for display and for the
one comparable price per product the store keeps for sorting and filtering. Floats would make a converted price
differ from what a client computes with the same rates, so everything here is ``Decimal`` and rounds once, at the
end, to the target currency's minor units.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson

from app.domain.normalize import parse_currency

# ISO 4217 minor units where they are not 2. Currencies with none (JPY) must never show cents; the dinars with
# three would lose a digit at two.
_ZERO_MINOR = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
_THREE_MINOR = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

# Intermediate precision: far beyond any price times any rate, so the only rounding is the final quantize.
_CONTEXT = decimal.Context(prec=60, rounding=ROUND_HALF_EVEN, traps=[decimal.InvalidOperation, decimal.DivisionByZero])


class UnknownCurrency(ValueError):
    """A currency the rates do not cover: converting it would have to guess."""

    def __init__(self, currency: str) -> None:
        super().__init__(f"no exchange rate for currency {currency!r}")
        self.currency = currency


def minor_units(currency: str) -> int:
    if currency in _ZERO_MINOR:
        return 0
    if currency in _THREE_MINOR:
        return 3
    return 2


def round_to_minor(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_EVEN, context=_CONTEXT)


@dataclass(frozen=True, slots=True)
class Rates:
    """How many units of each currency one unit of ``base`` buys, as of ``date``."""

    base: str
    date: date
    rates: Mapping[str, Decimal]

    def __post_init__(self) -> None:
        if self.rates.get(self.base) != Decimal(1):
            raise ValueError(f"the base currency {self.base} must have the rate 1")
        for code, rate in self.rates.items():
            if rate <= 0:
                raise ValueError(f"rate of {code} must be positive, got {rate}")

    def knows(self, currency: str) -> bool:
        return currency in self.rates

    def _rate(self, currency: str) -> Decimal:
        try:
            return self.rates[currency]
        except KeyError:
            raise UnknownCurrency(currency) from None

    def exact(self, amount: Decimal, from_cur: str, to_cur: str) -> Decimal:
        """Unrounded: for comparisons (sorting, filter bounds), where rounding would create false ties."""
        if from_cur == to_cur:
            self._rate(from_cur)
            return amount
        return _CONTEXT.divide(_CONTEXT.multiply(amount, self._rate(to_cur)), self._rate(from_cur))

    def convert(self, amount: Decimal, from_cur: str, to_cur: str) -> Decimal:
        """``amount`` in ``from_cur`` as ``to_cur``, through the base, rounded half-even to ``to_cur``'s minor units."""
        return round_to_minor(self.exact(amount, from_cur, to_cur), to_cur)

    @property
    def fingerprint(self) -> str:
        """Changes whenever any rate does: base prices computed with other rates must then be recomputed."""
        body = {"base": self.base, "date": self.date.isoformat(), "rates": {k: str(v) for k, v in self.rates.items()}}
        return orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode()


def convert(rates: Rates, amount: Decimal, from_cur: str, to_cur: str) -> Decimal:
    return rates.convert(amount, from_cur, to_cur)


def parse_rates(raw: bytes | str) -> Rates:
    """Read a rates file: ``{"base": "EUR", "date": "YYYY-MM-DD", "rates": {"USD": "1.087", ...}}``.

    Rates should be strings (or integers) so they stay exact; JSON floats are read through their text form.
    Raises ``ValueError`` naming what is wrong, so a bad file stops the start-up with a clear message.
    """
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"rates file is not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("rates"), dict):
        raise ValueError('rates file must be an object with "base", "date" and "rates"')
    base = parse_currency(data.get("base"))
    try:
        day = date.fromisoformat(str(data.get("date")))
    except ValueError:
        raise ValueError(f"rates file date must be YYYY-MM-DD, got {data.get('date')!r}") from None
    rates: dict[str, Decimal] = {base: Decimal(1)}
    for code, value in data["rates"].items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError(f"rate of {code!r} must be a number, got {value!r}")
        try:
            rates[parse_currency(code)] = Decimal(str(value))
        except decimal.InvalidOperation:
            raise ValueError(f"rate of {code!r} is not a number: {value!r}") from None
    return Rates(base=base, date=day, rates=rates)
