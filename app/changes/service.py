"""The change feed: what changed in the catalog since a token, for apps that keep an offline copy.

A page lists products in commit order (see ``app.domain.changes`` for the order across parts), each with its
current list document, or as a tombstone when it is gone; ``next`` resumes after the page. Like CouchDB's
``_changes``, a product appears once, at its latest change: a client applies the page as upserts and deletions
and is then as current as the node was. Tokens outlive restarts (the positions are stored with the products) and,
in the kafka runtime, nodes (the positions are the changelog's).

A token older than the feed keeps (deletions are kept ``CATALOG_CHANGES_RETENTION_S``) or of another catalog
answers 410: the client must resync from the start (no ``since``), since it may have missed deletions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from app.domain.changes import ChangeToken, advance, merge_page
from app.errors import Gone
from app.store.sqlite.changes import SqliteChanges

LOCAL = "local"
PRUNE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Change:
    product_id: str
    summary: bytes | None  # None: the product is gone
    after: ChangeToken  # the token that resumes right after this change


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[Change]
    next: ChangeToken
    more: bool


class ChangeFeed:
    def __init__(
        self,
        changes: SqliteChanges,
        prune: Callable[[float], Coroutine[Any, Any, int]],
        *,
        epoch: int | None,
        local_part: bool,
        retention_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``epoch``: what tokens must carry (None: this file's own, the embedded runtime); ``local_part``: list
        the file's own writes (the embedded runtime; a kafka node lists only changelog positions, which every node
        shares)."""
        self._changes = changes
        self._prune = prune
        self._epoch = epoch
        self._local_part = local_part
        self._retention_s = retention_s
        self._clock = clock
        self._pruned_at = float("-inf")

    @property
    def epoch(self) -> int:
        return self._epoch if self._epoch is not None else self._changes.epoch()

    def start(self) -> ChangeToken:
        return ChangeToken(self.epoch)

    def check(self, token: ChangeToken) -> None:
        if token.epoch != self.epoch:
            raise Gone(
                "the token is from another catalog (or one since rebuilt): resync from the start, without `since`",
                details={"reason": "epoch"},
            )
        for part, floor in self._changes.floors().items():
            if token.positions.get(part, (0, ""))[0] < floor:
                raise Gone(
                    "the token is older than the deletions the feed keeps: resync from the start, without `since`",
                    details={"reason": "expired", "part": part},
                )

    async def page(self, token: ChangeToken | None, limit: int) -> ChangePage:
        await self._maybe_prune()
        token = token or self.start()
        self.check(token)
        parts = {
            part: self._changes.rows_after(part, token.positions.get(part, (0, "")), limit + 1)
            for part in self._changes.parts()
            if self._local_part or part != LOCAL
        }
        rows = merge_page(parts, limit)
        more = sum(len(r) for r in parts.values()) > len(rows)
        summaries = self._changes.summaries(list({r.product_id for r in rows}))
        changes: list[Change] = []
        seen: set[str] = set()
        positions = dict(token.positions)
        for row in rows:
            positions = advance(positions, (row,))
            if row.product_id in seen:
                continue
            seen.add(row.product_id)
            changes.append(Change(row.product_id, summaries.get(row.product_id), ChangeToken(token.epoch, positions)))
        if changes:
            # the skipped duplicates after the last listed change still moved their parts on
            last = changes[-1]
            changes[-1] = Change(last.product_id, last.summary, ChangeToken(token.epoch, positions))
        return ChangePage(changes, ChangeToken(token.epoch, positions), more)

    async def _maybe_prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at >= min(PRUNE_EVERY_S, self._retention_s):
            self._pruned_at = now
            await self._prune(now - self._retention_s)
