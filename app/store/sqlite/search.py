"""Keeping the search index in step with the SQLite file: what changed since the index's watermark, read from the
store, written to the index after the store's commit.

Why it is shaped like this:
- Every product write takes a new ``change_seq`` (``offers.OfferWriter.rebuild``), whichever path made it: the
  embedded workers, the kafka node's changelog applier, the CLI in another process. So "the products whose
  ``change_seq`` is above the index's watermark" is every upsert the index has not seen, with no hook in the
  write paths themselves.
- Removals leave no row. The writer connection records its own in a TEMP table filled by a TEMP trigger (rolled
  back with the transaction that made them, invisible to other connections); removals by other processes are
  their ``feed`` tombstones at this file's own positions (``0006_change_feed.sql``: part ``local``,
  pos = ``change_seq``).
- The index is written after the store committed (``after_commit`` on the writer thread), so it never holds what
  the store rolled back; it commits within ``COMMIT_WITHIN`` (``TantivyIndex.commit_soon``), so a burst of small
  transactions shares one index commit. A process that stops in between finds the index behind at start and
  catches up from its watermark.
- A rebuild (a new or incompatible index, rates that changed every base price) runs on a thread of its own over
  one read snapshot; writes meanwhile only collect their removals, and a catch-up from the snapshot's position
  follows.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from app.search import SearchDoc, TantivyIndex

log = logging.getLogger(__name__)

RATES_FILE = "catalog-rates-version"
# Rows read per round trip while catching up or rebuilding: bounded memory at a million products.
BATCH = 2000
_SEP = "\x1f"
# The index writer's buffer for a rebuild in the API process; the CLI's rebuild, a process of its own, takes more.
REBUILD_HEAP = 64_000_000
CLI_REBUILD_HEAP = 256_000_000

_DOC_SQL = (
    "SELECT p.id, p.name, p.description, p.brand, p.category, p.min_price_base, p.min_price, p.in_stock, "
    "p.updated_at, (SELECT group_concat(v.vendor_id, char(31)) FROM product_vendors v WHERE v.product_id = p.id) "
    "FROM products p"
)


def install_removal_trigger(conn: sqlite3.Connection) -> None:
    """On the writer connection: every product it deletes is noted in ``temp.search_removed``."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS search_removed (id TEXT PRIMARY KEY) WITHOUT ROWID")
    conn.execute(
        "CREATE TEMP TRIGGER IF NOT EXISTS search_removed_product AFTER DELETE ON main.products BEGIN "
        "INSERT OR IGNORE INTO search_removed (id) VALUES (OLD.id); END"
    )


def _doc(row: tuple[object, ...]) -> SearchDoc:
    pid, name, description, brand, category, base, main, in_stock, updated, vendors = row
    price = base if base is not None else main
    return SearchDoc(
        id=str(pid),
        name=str(name or ""),
        description=str(description or ""),
        brand=str(brand) if brand else None,
        category=str(category) if category else None,
        vendors=tuple(str(vendors).split(_SEP)) if vendors else (),
        min_price_base=float(price or 0.0),  # type: ignore[arg-type]
        in_stock=bool(in_stock),
        updated_at=datetime.fromisoformat(str(updated)),
    )


def _docs_after(conn: sqlite3.Connection, after: int, upto: int) -> Iterator[SearchDoc]:
    """Products changed in ``(after, upto]``, in batches by ``change_seq`` (the ``products_seq`` index)."""
    while True:
        rows = conn.execute(
            f"{_DOC_SQL} WHERE p.change_seq > ? AND p.change_seq <= ? ORDER BY p.change_seq LIMIT ?",
            (after, upto, BATCH),
        ).fetchall()
        if not rows:
            return
        for row in rows:
            yield _doc(row[:10])
        (after,) = conn.execute("SELECT change_seq FROM products WHERE id = ?", (rows[-1][0],)).fetchone()


def _all_docs(conn: sqlite3.Connection) -> Iterator[SearchDoc]:
    after = ""
    while True:
        rows = conn.execute(f"{_DOC_SQL} WHERE p.id > ? ORDER BY p.id LIMIT ?", (after, BATCH)).fetchall()
        if not rows:
            return
        yield from (_doc(r) for r in rows)
        after = str(rows[-1][0])


def _seq(conn: sqlite3.Connection) -> int:
    (value,) = conn.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()
    return int(value)


def _rates_version(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'rates_version'").fetchone()
    return str(row[0]) if row else ""


@contextlib.contextmanager
def _snapshot(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One read transaction: the position and the rows read under it agree."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


class SearchSync:
    """The index's side of the store: catch up after each commit, rebuild when the index cannot be trusted."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_lag_s: float = 30.0,
        rebuild_heap: int = REBUILD_HEAP,
        catch_up_s: float = 1.0,
    ) -> None:
        """``path``: the index's directory (None: in memory), opened by ``open`` (the store's); ``rebuild_heap``:
        the index writer's buffer during a rebuild (the API's RSS pays for it while it runs)."""
        self.path = path
        self.rebuild_heap = rebuild_heap
        self._index: TantivyIndex | None = None
        self.max_lag_s = max_lag_s
        self._lock = threading.Lock()  # one catch-up or rebuild at a time
        self._removed: set[str] = set()  # removals seen while a rebuild held the lock
        self._removed_lock = threading.Lock()
        # How far this process has written the index (committed or within the commit window): a catch-up starts
        # here, not at the committed watermark, so it never rewrites what the last one already wrote.
        self._position: int | None = None
        self.rebuilding = False
        self.failure: str | None = None
        self._behind: tuple[float, int] | None = None
        self._thread: threading.Thread | None = None
        # The index's own thread and read connection: the store's writer only wakes it, so a store write never
        # waits on the index (its commits, its lock), and writes that come faster than it indexes are taken
        # together, each product once in its latest version. ``catch_up_s``: how long it sleeps unwoken, the
        # delay of other processes' writes.
        self.catch_up_s = catch_up_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._connect: Callable[[], sqlite3.Connection] | None = None

    def open(self, connect: Callable[[], sqlite3.Connection] | None = None) -> TantivyIndex:
        """``connect``: read connections of the store's file, for the index's own thread (``follow``)."""
        if connect is not None:
            self._connect = connect
        if self._index is None:
            self._index = TantivyIndex(self.path)
            self._position = self._index.watermark
        return self._index

    @property
    def index(self) -> TantivyIndex:
        if self._index is None:
            raise RuntimeError("the search index is not open (SqliteCatalog.open opens it)")
        return self._index

    @property
    def ready(self) -> bool:
        """Whether searches may use the index: it was built (a watermark) and no rebuild is replacing it."""
        return self._index is not None and not self.rebuilding and self._position is not None and not self.failure

    def needs_rebuild(self, conn: sqlite3.Connection) -> bool:
        """A new index, one of another format, or base prices computed with other rates than its own."""
        return self.index.watermark is None or self.index.recreated or self._stored_rates() != _rates_version(conn)

    def _stored_rates(self) -> str | None:
        path = self.index.path
        if path is None:
            return getattr(self, "_memory_rates", None)
        file = path / RATES_FILE
        return file.read_text() if file.exists() else None

    def _save_rates(self, version: str) -> None:
        path = self.index.path
        if path is None:
            self._memory_rates = version
        else:
            (path / RATES_FILE).write_text(version)

    # -- after each commit of the writer connection -------------------------------------------------------------

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """On the writer connection after each commit: bring the index up to what it sees; never raises (the
        store's write went through, and the next commit or the periodic catch-up retries)."""
        removed = {r[0] for r in conn.execute("SELECT id FROM temp.search_removed")}
        if removed:
            conn.execute("DELETE FROM temp.search_removed")
            with self._removed_lock:
                self._removed |= removed
        if self._follower is not None:
            self._wake.set()
        else:
            self._sync(conn)

    def follow(self) -> None:
        """Start the index's own thread (see ``__init__``); without it, ``after_commit`` indexes in place."""
        if self._follower is not None or self._connect is None:
            return
        self._stop.clear()
        self._follower = threading.Thread(target=self._follow, name="search-index", daemon=True)
        self._follower.start()

    def _follow(self) -> None:
        assert self._connect is not None
        conn = self._connect()
        try:
            while not self._stop.is_set():
                self._wake.wait(self.catch_up_s)
                self._wake.clear()
                if not self._stop.is_set():
                    self.catch_up(conn, blocking=True)
        finally:
            conn.close()

    def flush(self) -> None:
        """Index what the store has committed and make it searchable, now (tests, tools)."""
        assert self._connect is not None
        with contextlib.closing(self._connect()) as conn:
            self._sync(conn, blocking=True)
        self.index.commit()

    def catch_up(self, conn: sqlite3.Connection, *, blocking: bool = False) -> None:
        """What the store has and the index not yet (this process's writes, another's, such as the CLI's)."""
        if self._position is not None and not self.failure and not self._removed and _seq(conn) <= self._position:
            return
        self._sync(conn, blocking=blocking)

    def _sync(self, conn: sqlite3.Connection, *, blocking: bool = False) -> None:
        if self._index is None:
            return  # not open yet (the store's own start-up writes): the start's catch-up covers them
        if not self._lock.acquire(blocking=blocking):
            return  # a rebuild runs: it catches up from its snapshot, the removals collected included
        try:
            self._catch_up(conn)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            log.exception("search index update failed; the next write or the periodic catch-up retries it")
        finally:
            self._lock.release()

    def _catch_up(self, conn: sqlite3.Connection) -> None:
        if self._position is None:
            return  # never built: only a rebuild fills it
        with self._removed_lock:
            removed, self._removed = self._removed, set()
        try:
            with _snapshot(conn):
                upto = _seq(conn)
                if upto > self._position:
                    removed |= {
                        r[0]
                        for r in conn.execute(
                            "SELECT product_id FROM feed WHERE deleted = 1 AND part = 'local' AND pos > ?",
                            (self._position,),
                        )
                    }
                if removed:
                    self.index.delete(removed)
                if upto > self._position:
                    self.index.upsert(_docs_after(conn, self._position, upto))
        except BaseException:
            with self._removed_lock:  # tried again by the next catch-up, with the upserts from the same position
                self._removed |= removed
            raise
        if upto > self._position or removed:
            self._position = max(upto, self._position)
            self.index.commit_soon(watermark=self._position)
        self.failure = None

    # -- rebuild -------------------------------------------------------------------------------------------------

    def rebuild(self, conn: sqlite3.Connection) -> int:
        """Replace the whole index with the store's products (blocking); returns how many."""
        with self._lock:
            self.rebuilding = True
            try:
                with _snapshot(conn):
                    upto = _seq(conn)
                    rates = _rates_version(conn)
                    n = self.index.rebuild(_all_docs(conn), watermark=upto, writer_heap=self.rebuild_heap)
                self._save_rates(rates)
                self._position = upto
                self.failure = None
            finally:
                self.rebuilding = False
            self._catch_up(conn)
        return n

    def rebuild_in_background(self, connect: Callable[[], sqlite3.Connection]) -> None:
        """``rebuild`` on a thread of its own with a connection of its own; searches use FTS5 meanwhile."""
        self.rebuilding = True

        def run() -> None:
            conn = connect()
            try:
                started = time.monotonic()
                n = self.rebuild(conn)
                log.info("search index rebuilt: %d products in %.1f s", n, time.monotonic() - started)
            except Exception as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
                self.rebuilding = False
                log.exception("search index rebuild failed")
            finally:
                conn.close()

        self._thread = threading.Thread(target=run, name="search-rebuild", daemon=True)
        self._thread.start()

    def wait_rebuilt(self) -> bool:
        """Wait for a background rebuild; whether there was one."""
        thread, self._thread = self._thread, None
        if thread is None:
            return False
        thread.join()
        return True

    # -- readiness -----------------------------------------------------------------------------------------------

    def problem(self, store_seq: int) -> str | None:
        """Why searches cannot trust the index, or None: missing (never built, rebuilding), failing, or behind
        the store for longer than ``max_lag_s`` (a write not indexed that long after it committed)."""
        if self._index is None:
            return "the search index is not open"
        if self.rebuilding:
            return "the search index is being rebuilt (searches use SQLite FTS5 meanwhile)"
        if self._position is None:
            return "the search index is missing: run `catalog search rebuild`"
        if self.failure is not None:
            return "the search index cannot be written (see the log)"
        watermark = self.index.watermark or 0
        now = time.monotonic()
        if watermark >= store_seq:
            self._behind = None
            return None
        if self._behind is None or watermark >= self._behind[1]:
            self._behind = (now, store_seq)  # caught up with the last mark: measure from here
            return None
        if now - self._behind[0] > self.max_lag_s:
            return f"the search index is behind the store by more than {self.max_lag_s:.0f} s"
        return None

    def close(self) -> None:
        follower, self._follower = self._follower, None
        if follower is not None:
            self._stop.set()
            self._wake.set()
            follower.join()
        self.wait_rebuilt()
        with self._lock:
            if self._index is not None:
                self._index.close()


def default_index_dir(db_path: Path) -> Path:
    """Beside the SQLite file, one per file: nodes with files of their own get indexes of their own."""
    return db_path.with_name(db_path.name + ".search")
