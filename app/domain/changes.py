"""The change feed's positions and tokens, and the one rule that orders a page (pure: no SQLite, no HTTP).

Why positions are per part: every node of the kafka runtime applies the same changelog, so a position in it
(topic partition, offset) names the same change on every node, whereas a node's ``change_seq`` is its own. A token
is therefore a vector: for each part (``u<partition>`` of the updates topic, ``v<partition>`` of the vendors topic,
``local`` for this file's own writes) the last position the client has seen. Within a part, changes come in commit
order (offset order); across parts a page merges the parts by the time of each change (the message's timestamp,
again the same on every node), and always takes a prefix of each part, so the next token never skips anything.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from app.domain.cursor import InvalidCursor


@dataclass(frozen=True, slots=True)
class FeedPosition:
    """Where the change being applied is in the changelog: the same on every node."""

    part: str
    pos: int
    at: float


@dataclass(frozen=True, slots=True)
class FeedRow:
    product_id: str
    part: str
    pos: int
    at: float
    deleted: bool


#: A place in one part: (position, product id). Many products change at one position (a page of offers is one
#: message), so a page may end among them: the id says where.
Mark = tuple[int, str]


@dataclass(frozen=True, slots=True)
class ChangeToken:
    epoch: int
    positions: Mapping[str, Mark] = field(default_factory=dict)

    def encode(self) -> str:
        """The token's payload (signed by the API before it leaves)."""
        marks = {part: list(mark) for part, mark in sorted(self.positions.items())}
        return orjson.dumps({"v": 1, "e": self.epoch, "p": marks}).hex()

    @classmethod
    def decode(cls, payload: str) -> ChangeToken:
        try:
            raw = orjson.loads(bytes.fromhex(payload))
        except ValueError as exc:
            raise InvalidCursor("not a change token") from exc
        if not isinstance(raw, dict) or raw.get("v") != 1 or type(raw.get("e")) is not int:
            raise InvalidCursor("not a change token")
        positions = raw.get("p")
        if not isinstance(positions, dict) or not all(
            isinstance(k, str)
            and isinstance(v, list)
            and len(v) == 2
            and type(v[0]) is int
            and v[0] >= 0
            and isinstance(v[1], str)
            for k, v in positions.items()
        ):
            raise InvalidCursor("not a change token")
        return cls(raw["e"], {k: (v[0], v[1]) for k, v in positions.items()})


def merge_page(parts: Mapping[str, Sequence[FeedRow]], limit: int) -> list[FeedRow]:
    """The first ``limit`` rows of the parts merged by (time, part, position); each part's rows must come in
    position order, and the page takes a prefix of each."""
    heads: list[tuple[float, str, int, str, int]] = []
    for name, rows in parts.items():
        if rows:
            heads.append((rows[0].at, name, rows[0].pos, rows[0].product_id, 0))
    heapq.heapify(heads)
    page: list[FeedRow] = []
    while heads and len(page) < limit:
        _, name, _, _, index = heapq.heappop(heads)
        rows = parts[name]
        page.append(rows[index])
        if index + 1 < len(rows):
            nxt = rows[index + 1]
            heapq.heappush(heads, (nxt.at, name, nxt.pos, nxt.product_id, index + 1))
    return page


def advance(positions: Mapping[str, Mark], rows: Iterable[FeedRow]) -> dict[str, Mark]:
    out = dict(positions)
    for row in rows:
        out[row.part] = max(out.get(row.part, (0, "")), (row.pos, row.product_id))
    return out
