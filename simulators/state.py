"""A running simulator's mutable state: its config, which items it carries, and how they changed over time.

Changes are kept as per-item overrides on top of the immutable base catalog, so a tick costs O(changed items)
and an unchanged item never has to be re-rendered. Only the event loop thread touches this object.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from simulators.catalog import BaseItem, build_catalog
from simulators.common import cents, unit
from simulators.config import FAILURE_MODES, FailureMode, SimConfig

CHANGE_FRACTION = 0.05
MAX_PRICE_SWING = 1500  # basis points: +-15 %

_SALT_CARRY = 0xCA77
_SALT_BAD = 0xBAD1
_SALT_BAD_FIELD = 0xBAD2
_MIN_PRICE = Decimal("0.01")

BadField = Literal["price", "title"]


@dataclass(frozen=True, slots=True)
class Override:
    price: Decimal  # USD
    stock: int
    updated_at: datetime


class SimState:
    def __init__(self, config: SimConfig, carried_fraction: float = 1.0) -> None:
        self.config = config
        self.catalog: list[BaseItem] = build_catalog(config.size)
        size = len(self.catalog)
        if carried_fraction >= 1.0:
            self.carried = list(range(size))
        else:
            seed = config.seed
            self.carried = [pos for pos in range(size) if unit(seed, pos + 1, _SALT_CARRY) < carried_fraction]
        self._carries = bytearray(size)
        for pos in self.carried:
            self._carries[pos] = 1
        self.overrides: dict[int, Override] = {}
        self.version = 0
        self.ticks = 0
        self.requests = 0
        self.failures: dict[str, int] = dict.fromkeys(FAILURE_MODES, 0)
        # Failure dice are seeded too: a run with error_rate=0.3 fails the same requests every time.
        self._dice = random.Random(config.seed)
        self._since: dict[tuple[datetime, bool], list[int]] = {}
        self._max_base_updated = max(
            (item.updated_at for item in self.catalog), default=datetime.min.replace(tzinfo=UTC)
        )

    # -- what the store holds now ------------------------------------------------------------------------

    def carries(self, pos: int) -> bool:
        return 0 <= pos < len(self._carries) and self._carries[pos] == 1

    def price(self, pos: int) -> Decimal:
        override = self.overrides.get(pos)
        return override.price if override else self.catalog[pos].price

    def stock(self, pos: int) -> int:
        override = self.overrides.get(pos)
        return override.stock if override else self.catalog[pos].stock

    def updated_at(self, pos: int) -> datetime:
        override = self.overrides.get(pos)
        return override.updated_at if override else self.catalog[pos].updated_at

    def bad_field(self, pos: int) -> BadField | None:
        """Which field this item is served broken, if any; a pure function of the item so retries agree."""
        rate = self.config.bad_item_rate
        item_id = pos + 1
        if rate <= 0 or unit(self.config.seed, item_id, _SALT_BAD) >= rate:
            return None
        return "price" if unit(self.config.seed, item_id, _SALT_BAD_FIELD) < 0.5 else "title"

    # -- change over time ---------------------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> list[int]:
        """Reprice and restock ~5 % of the carried items; returns their positions, ascending."""
        self.ticks += 1
        if not self.carried:
            return []
        rng = random.Random(self.config.seed * 1_000_003 + self.ticks)
        count = max(1, round(len(self.carried) * CHANGE_FRACTION))
        positions = sorted(rng.sample(self.carried, count))
        # Whole seconds: that is what every platform shows, and a filter must agree with what was shown.
        moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        for pos in positions:
            swing = Decimal(rng.randint(-MAX_PRICE_SWING, MAX_PRICE_SWING)) / 10_000
            price = max(cents(self.catalog[pos].price * (1 + swing)), _MIN_PRICE)
            stock = 0 if rng.random() < 0.1 else rng.randint(1, 200)
            self.overrides[pos] = Override(price, stock, moment)
        self.version += 1
        self._since.clear()
        return positions

    def updated_since(self, since: datetime, *, strict: bool = False) -> list[int]:
        """Carried positions updated at/after ``since`` (after, when ``strict``), ascending.

        Cached per (since, strict) until the next tick, so paging through a filtered listing scans once.
        """
        key = (since, strict)
        cached = self._since.get(key)
        if cached is not None:
            return cached

        def passes(moment: datetime) -> bool:
            return moment > since if strict else moment >= since

        if not passes(self._max_base_updated):
            # Incremental syncs ask for "after my last sync": only overridden items can qualify.
            result = sorted(pos for pos, o in self.overrides.items() if passes(o.updated_at))
        else:
            result = [pos for pos in self.carried if passes(self.updated_at(pos))]
        if len(self._since) >= 16:
            self._since.clear()
        self._since[key] = result
        return result

    # -- misbehaviour and bookkeeping ---------------------------------------------------------------------

    def draw_failure(self) -> FailureMode | None:
        config = self.config
        if config.error_rate <= 0 or not config.failure_modes or self._dice.random() >= config.error_rate:
            return None
        mode = self._dice.choice(config.failure_modes)
        self.failures[mode] += 1
        return mode

    def stats(self) -> dict[str, Any]:
        return {
            "kind": str(self.config.kind),
            "name": self.config.name,
            "requests": self.requests,
            "failures": dict(self.failures),
            "items": len(self.carried),
            "catalog_size": len(self.catalog),
            "ticks": self.ticks,
            "changed_items": len(self.overrides),
        }
