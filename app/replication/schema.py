"""What is replicated, in one place both sides read: the SQLite capture and the PostgreSQL replica.

A table's replicated columns are its SQLite columns minus its exclusion list (read from ``PRAGMA table_info`` by the
capture, so a new column travels without hand-written SQL); PostgreSQL must hold exactly those, plus its own
bookkeeping, or the pusher refuses to push. ``Change`` is one captured row image or tombstone, as the outbox keeps it
and the replica applies it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TableSpec:
    name: str
    pk: tuple[str, ...]
    excluded: frozenset[str] = field(default_factory=frozenset)
    #: replicated, but a change to these columns alone is not captured
    carried: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the declared type, upper case: TEXT, INTEGER, REAL
    notnull: bool
    pk: bool


# Why these columns are excluded, and why ``offers.fetched_at`` is carried: app/replication/capture.py.
REPLICATED: tuple[TableSpec, ...] = (
    TableSpec("vendors", ("id",), frozenset({"change_seq"})),
    TableSpec(
        "vendor_sync",
        ("vendor_id",),
        frozenset({"pages", "items_seen", "items_skipped", "items_total", "skip_reasons"}),
    ),
    TableSpec(
        "offers",
        ("vendor_id", "vendor_product_id"),
        frozenset({"content_hash", "change_seq"}),
        carried=frozenset({"fetched_at"}),
    ),
    TableSpec("products", ("id",), frozenset({"summary", "doc", "description", "change_seq"})),
    # People's splits and pins (issue 10); the blocking index and edges beside it are derived, like the FTS tables.
    TableSpec("match_overrides", ("vendor_id", "vendor_product_id", "kind", "other_vendor_id", "other_product_id")),
)
SPECS = {spec.name: spec for spec in REPLICATED}


@dataclass(frozen=True)
class Change:
    """One outbox row: ``op`` 'U' with the full row image (JSON) or 'D' (a tombstone, ``row`` None); ``pk`` is the
    primary key as a JSON array, ``at`` the Unix time of the capture."""

    seq: int
    tbl: str
    pk: str
    op: str
    row: str | None
    at: float
