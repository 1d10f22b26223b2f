"""The PostgreSQL side of replication: apply captured SQLite changes, acknowledged by a watermark.

Why it is shaped like this:
- A batch is applied in one transaction: the changes are coalesced per primary key here (the last image wins), COPYed
  into one typed temp staging table per replicated table, then applied by set-based SQL. Typed staging (the JSON
  images parsed on this side) measured a third cheaper than staging jsonb and unpacking it in SQL.
- The price history sees every image of the batch in order, not only the last: a price that changed twice between
  two pushes leaves two history rows. Images after the first of a row are compared here; the first is compared with
  the stored offer in SQL, before the upsert replaces it.
- Each row remembers the node and outbox sequence that wrote it; an upsert or delete only wins over an older sequence
  of the same node, so a replayed or late batch changes nothing.
- The node's watermark row is locked (``FOR UPDATE``) and advanced in the same transaction. It must equal what the
  pusher believes it is; if not (a second pusher for the same node), the batch is refused and the pusher re-reads it.
- A batch PostgreSQL rejects (CHECK, bad number...) is bisected in rolled-back trial transactions down to the row.
- Staging (coalescing, parsing, encoding the COPY text) is pure Python apart from the apply (``stage`` /
  ``apply(staged=...)``), so the pusher stages batch N+1 on its helper thread while PostgreSQL runs batch N's
  statements; the push then costs about what PostgreSQL's part costs. The COPY text is written here rather than by
  psycopg's ``write_row`` so that nothing of it is left for the applying thread; it is byte for byte what
  ``write_row`` writes.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql

from app.domain.models import Offer
from app.replication.postgres.migrate import upgrade
from app.replication.schema import REPLICATED, SPECS, Change, Column
from app.store.sqlite.offers import OFFER_READ, row_to_offer

log = logging.getLogger(__name__)

BOOKKEEPING = ("src_node", "src_seq", "changed_at")
#: A batch PostgreSQL refuses for its content (CHECK, bad number...): bisected to the row, never retried blindly.
REJECTED = (psycopg.errors.DataError, psycopg.errors.IntegrityError)
#: PostgreSQL is down, restarting or dropped the connection: reconnect and retry.
UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError)
#: What stops an initial load without stopping the node: PostgreSQL unreachable, or never migrated.
LOAD_ERRORS = (psycopg.OperationalError, psycopg.errors.UndefinedTable)


class SchemaMismatch(Exception):
    """SQLite's replicated columns and PostgreSQL's differ: pushing would lose or invent data."""


class WatermarkMoved(Exception):
    """PostgreSQL's watermark for this node is not the one the pusher started from."""


@dataclass(frozen=True)
class Staged:
    """A batch ready to COPY: the changes it was built from, the columns it was built with, and per staging table
    its COPY statement and rows in COPY's text format (UTF-8)."""

    changes: Sequence[Change]
    columns: dict[str, list[str]]
    copies: tuple[tuple[sql.SQL | sql.Composed, bytes], ...]


@dataclass(frozen=True)
class Rejected:
    change: Change
    error: str

    def describe(self) -> dict[str, object]:
        """Which change and why, for /ready and the log: its key and column names, never its values (a vendor row
        carries credentials, any row may carry what made PostgreSQL refuse it)."""
        c = self.change
        try:
            image = orjson.loads(c.row) if c.row is not None else None
        except orjson.JSONDecodeError:
            image = None
        columns = sorted(image) if isinstance(image, dict) else None
        return {"seq": c.seq, "table": c.tbl, "pk": c.pk, "op": c.op, "columns": columns, "error": self.error}


def pg_error(exc: BaseException) -> str:
    """PostgreSQL's reason without its DETAIL (which quotes the failing row: "Failing row contains (...)")."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {primary or (lines[0] if lines else '')}".strip()


class PostgresReplica:
    def __init__(self, url: str, *, schema: str, node_id: str, connect_timeout_s: float = 5.0) -> None:
        self.url = url
        self.schema = schema
        self.node_id = node_id
        self._connect_timeout_s = connect_timeout_s
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._columns: dict[str, list[str]] | None = None
        self._statements: list[sql.Composed] = []
        self._copy_sql: dict[str, sql.Composed] = {}
        self._apply_sql: sql.Composed = sql.Composed([])
        self._apply_sql_fresh: sql.Composed = sql.Composed([])

    # -- connection ------------------------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or migrate the tables (Alembic); a fresh PostgreSQL needs no ``catalog db upgrade`` first."""
        upgrade(self.url, self.schema)

    def connect(self) -> None:
        self.close()
        conn = psycopg.connect(self.url, connect_timeout=max(1, int(self._connect_timeout_s)))
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
        conn.execute("SET client_encoding TO 'UTF8'")  # the staged COPY rows are UTF-8
        # A batch's staging rows and its per-row sorts fit in memory (the defaults spill 5,000 images to disk).
        conn.execute("SET temp_buffers = '64MB'")
        conn.execute("SET work_mem = '64MB'")
        conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS repl_price_images (seq bigint, at double precision, first boolean, "
            "vendor_id text, vendor_product_id text, product_id text, price text, currency text, availability text) "
            "ON COMMIT DELETE ROWS"
        )
        conn.commit()
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    @property
    def conn(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            raise psycopg.OperationalError("not connected to PostgreSQL")
        return self._conn

    # -- schema ----------------------------------------------------------------------------------------------

    def pg_columns(self) -> dict[str, list[str]]:
        rows = self.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s "
            "ORDER BY table_name, ordinal_position",
            (self.schema,),
        ).fetchall()
        self.conn.commit()
        found: dict[str, list[str]] = {}
        for table, column in rows:
            found.setdefault(table, []).append(column)
        return found

    def check_schema(self, sqlite_columns: dict[str, list[Column]]) -> None:
        """Refuse to push unless every replicated table has the same columns on both sides."""
        pg = self.pg_columns()
        problems = []
        for spec in REPLICATED:
            mine = {c.name for c in sqlite_columns[spec.name]}
            if spec.name not in pg:
                problems.append(f"table {spec.name} is missing in PostgreSQL (run `catalog db upgrade`)")
                continue
            theirs = set(pg[spec.name]) - set(BOOKKEEPING)
            if mine - theirs:
                problems.append(f"{spec.name}: only in SQLite: {', '.join(sorted(mine - theirs))}")
            if theirs - mine:
                problems.append(f"{spec.name}: only in PostgreSQL: {', '.join(sorted(theirs - mine))}")
        if problems:
            raise SchemaMismatch(
                "SQLite and PostgreSQL columns differ, refusing to push: "
                + "; ".join(problems)
                + ". Add an Alembic migration in app/replication/postgres/migrations/versions (or exclude the column "
                "in app/replication/schema.py) so both sides have the same replicated columns."
            )
        self._columns = {t: [c.name for c in cols] for t, cols in sqlite_columns.items()}
        self._create_staging()
        self._statements = self._build_statements()
        # All of them in one round trip (a multi-statement query, planned each time: under a millisecond). The
        # pusher's helper thread stages the next batch meanwhile, and a thread woken by a reply from PostgreSQL can
        # wait up to the interpreter's switch interval (5 ms) for the GIL: the fewer replies, the fewer such waits.
        self._apply_sql = sql.SQL("; ").join(self._statements)
        node = sql.Literal(self.node_id)
        self._apply_sql_fresh = sql.SQL("; ").join(
            [self._price_history_sql(node, guarded=False), *self._statements[1:]]
        )
        self._copy_sql = {
            spec.name: sql.SQL("COPY {} FROM STDIN").format(self._stage(spec.name)) for spec in REPLICATED
        }

    # -- watermark -------------------------------------------------------------------------------------------

    def watermark(self) -> int:
        row = self.conn.execute("SELECT watermark FROM repl_nodes WHERE node_id = %s", (self.node_id,)).fetchone()
        self.conn.commit()
        return int(row[0]) if row else 0

    # -- apply -----------------------------------------------------------------------------------------------

    @staticmethod
    def _stage(table: str) -> sql.Identifier:
        return sql.Identifier(f"repl_stage_{table}")

    def _create_staging(self) -> None:
        """One temp table per replicated table: its columns and types, no constraints (tombstones are NULLs)."""
        assert self._columns is not None
        conn = self.conn
        for spec in REPLICATED:
            types = dict(
                conn.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                    (f'"{self.schema}"."{spec.name}"',),
                ).fetchall()
            )
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(types[c])) for c in self._columns[spec.name]
            )
            conn.execute(sql.SQL("DROP TABLE IF EXISTS pg_temp.{}").format(self._stage(spec.name)))
            conn.execute(
                sql.SQL(
                    "CREATE TEMP TABLE {} (seq bigint, op text, at double precision, solo boolean, {}) "
                    "ON COMMIT DELETE ROWS"
                ).format(self._stage(spec.name), columns)
            )
        conn.commit()

    def _build_statements(self) -> list[sql.Composed]:
        assert self._columns is not None
        node = sql.Literal(self.node_id)
        statements: list[sql.Composed] = [self._price_history_sql(node, guarded=True)]
        for spec in REPLICATED:
            cols = self._columns[spec.name]
            table, stage = sql.Identifier(spec.name), self._stage(spec.name)
            key_match = sql.SQL(" AND ").join(sql.SQL("t.{c} = l.{c}").format(c=sql.Identifier(c)) for c in spec.pk)
            statements.append(
                sql.SQL(
                    "DELETE FROM {table} t USING {stage} l WHERE l.op = 'D' AND {key_match} "
                    "AND (t.src_node <> {node} OR t.src_seq < l.seq)"
                ).format(table=table, stage=stage, key_match=key_match, node=node)
            )
            statements.append(
                sql.SQL(
                    "INSERT INTO {table} AS t ({cols}, src_node, src_seq, changed_at) "
                    "SELECT {lcols}, {node}, l.seq, to_timestamp(l.at) FROM {stage} l WHERE l.op = 'U' "
                    "ON CONFLICT ({pk}) DO UPDATE SET {sets}, src_node = EXCLUDED.src_node, "
                    "src_seq = EXCLUDED.src_seq, changed_at = EXCLUDED.changed_at "
                    "WHERE t.src_node <> EXCLUDED.src_node OR t.src_seq < EXCLUDED.src_seq"
                ).format(
                    table=table,
                    cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
                    lcols=sql.SQL(", ").join(sql.SQL("l.{}").format(sql.Identifier(c)) for c in cols),
                    node=node,
                    stage=stage,
                    pk=sql.SQL(", ").join(sql.Identifier(c) for c in spec.pk),
                    sets=sql.SQL(", ").join(
                        sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in cols if c not in spec.pk
                    ),
                )
            )
        return statements

    @staticmethod
    def _price_history_sql(node: sql.Literal, *, guarded: bool) -> sql.Composed:
        """History rows: the only image of a row when it differs from the stored offer, and the images of rows
        changed several times in the batch (``repl_price_images``: the first, compared with the stored offer, and
        those that differ from the image before them). Runs before the offers upsert replaces the stored offer.

        ``guarded``: a history row this node already wrote for the same sequence (a replay) is kept, not duplicated.
        Unguarded, the insert skips ``ON CONFLICT``'s per-row speculative insertion (measured: about a fifth of this
        insert's time for 5,000 changed offers); ``apply`` uses it only when no history row of this node lies above
        the locked watermark, so no row of the batch can conflict."""
        return sql.SQL(
            """INSERT INTO price_history (vendor_id, vendor_product_id, product_id, price, currency, availability,
                                          changed_at, src_node, src_seq)
               SELECT s.vendor_id, s.vendor_product_id, s.product_id, s.price, s.currency, s.availability,
                      to_timestamp(s.at), {node}, s.seq
               FROM (SELECT seq, at, true AS first, vendor_id, vendor_product_id, product_id, price, currency,
                            availability
                     FROM repl_stage_offers WHERE op = 'U' AND solo
                     UNION ALL
                     SELECT * FROM repl_price_images) s
               LEFT JOIN offers cur
                    ON s.first AND cur.vendor_id = s.vendor_id AND cur.vendor_product_id = s.vendor_product_id
               WHERE NOT s.first OR cur.vendor_id IS NULL
                  OR ((cur.src_node <> {node} OR cur.src_seq < s.seq)
                      AND (cur.price, cur.currency, cur.availability)
                          IS DISTINCT FROM (s.price, s.currency, s.availability))
               {conflict}"""
        ).format(node=node, conflict=sql.SQL("ON CONFLICT (src_node, src_seq) DO NOTHING" if guarded else ""))

    def stage(self, changes: Sequence[Change]) -> Staged:
        """The pure-Python half of a batch: coalesced per row, the images parsed, the staging rows encoded for COPY.

        Touches no connection and only reads what ``check_schema`` built, so the pusher runs it on its helper thread
        for the next batch while PostgreSQL applies this one (psycopg releases the GIL while it waits).
        """
        columns = self._columns
        if columns is None:
            raise RuntimeError("check_schema first")
        unknown = {c.tbl for c in changes} - set(SPECS)
        if unknown:
            raise SchemaMismatch(f"outbox holds changes of tables that are not replicated: {sorted(unknown)}")
        by_row: dict[tuple[str, str], list[Change]] = {}
        for c in changes:
            by_row.setdefault((c.tbl, c.pk), []).append(c)
        staged: dict[str, list[str]] = {spec.name: [] for spec in REPLICATED}
        price_images: list[str] = []
        # A captured image holds every replicated column (the triggers write them all), so one C-level getter per
        # table reads them; a row missing one (written by an older trigger) falls back to None for it.
        getters = {tbl: operator.itemgetter(*cols) for tbl, cols in columns.items() if cols}
        for (tbl, pk), images in by_row.items():
            cols = columns[tbl]
            last = images[-1]
            if last.op == "U":
                text = last.row or "{}"
                row = orjson.loads(text)
                try:
                    got = getters[tbl](row)
                    values = list(got) if len(cols) > 1 else [got]
                except KeyError:
                    values = [row.get(c) for c in cols]
            else:
                text = pk
                key = dict(zip(SPECS[tbl].pk, orjson.loads(pk), strict=True))
                values = [key.get(c) for c in cols]
            staged[tbl].append(_copy_line((last.seq, last.op, last.at, len(images) == 1), values, text))
            if tbl == "offers" and len(images) > 1:
                price_images.extend(_price_changes(images))
        copies: list[tuple[sql.SQL | sql.Composed, bytes]] = [
            (self._copy_sql[tbl], _copy_data(lines)) for tbl, lines in staged.items() if lines
        ]
        if price_images:
            copies.append((_PRICE_IMAGES_COPY, _copy_data(price_images)))
        return Staged(changes, columns, tuple(copies))

    def _apply_staged(
        self, staged: Staged, meanwhile: Callable[[], object] | None = None, *, fresh: bool = False
    ) -> None:
        with self.conn.cursor() as cur:
            for statement, data in staged.copies:
                with cur.copy(statement) as copy:
                    copy.write(data)
            if meanwhile is not None:
                meanwhile()
            cur.execute(self._apply_sql_fresh if fresh else self._apply_sql)

    def _stage_and_apply(self, changes: Sequence[Change]) -> None:
        self._apply_staged(self.stage(changes))

    def apply(
        self,
        changes: Sequence[Change],
        *,
        expected: int,
        upto: int,
        staged: Staged | None = None,
        meanwhile: Callable[[], object] | None = None,
    ) -> None:
        """Apply ``changes`` and move the watermark from ``expected`` to ``upto``, atomically; commits.

        ``staged`` is ``stage(changes)`` prepared ahead; it is used only if it was built from this very sequence of
        changes with the current columns, else the batch is staged again here. ``meanwhile`` is called once the
        rows are sent, just before the set-based statements, PostgreSQL's longest step, during which this thread
        waits without the GIL: the moment for other Python work (the pusher stages the next batch then)."""
        if self._columns is None:
            raise RuntimeError("check_schema first")
        if changes and (staged is None or staged.changes is not changes or staged.columns is not self._columns):
            staged = self.stage(changes)
        conn = self.conn
        try:
            conn.execute(
                "INSERT INTO repl_nodes (node_id) VALUES (%s) ON CONFLICT (node_id) DO NOTHING", (self.node_id,)
            )
            (current,) = conn.execute(
                "SELECT watermark FROM repl_nodes WHERE node_id = %s FOR UPDATE", (self.node_id,)
            ).fetchone() or (0,)
            if current != expected:
                raise WatermarkMoved(f"PostgreSQL's watermark of node {self.node_id!r} is {current}, not {expected}")
            if changes and staged is not None:
                # Every change here is above ``expected``; the node's history rows are written only under the lock
                # held now, so without one above ``expected`` none of this batch's can exist (only a replay after
                # a watermark reset finds some).
                (replayed,) = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM price_history WHERE src_node = %s AND src_seq > %s)",
                    (self.node_id, expected),
                ).fetchone() or (True,)
                self._apply_staged(staged, meanwhile, fresh=not replayed)
            conn.execute(
                "UPDATE repl_nodes SET watermark = %s, changes = changes + %s, pushed_at = now() WHERE node_id = %s",
                (upto, len(changes), self.node_id),
            )
            conn.commit()
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
            raise

    def _trial(self, changes: Sequence[Change]) -> str | None:
        """Apply in a transaction that is always rolled back: the error PostgreSQL gives, or None."""
        try:
            with self.conn.transaction(force_rollback=True):
                self._stage_and_apply(changes)
        except REJECTED as exc:
            return pg_error(exc)
        return None

    def find_rejected(self, changes: Sequence[Change]) -> Rejected | None:
        """Bisect the batch down to the change PostgreSQL refuses; None if only the whole batch fails."""
        error = self._trial(changes)
        if error is None:
            return None
        part = list(changes)
        while len(part) > 1:
            half = len(part) // 2
            first = self._trial(part[:half])
            if first is not None:
                part, error = part[:half], first
                continue
            second = self._trial(part[half:])
            if second is None:
                return None
            part, error = part[half:], second
        return Rejected(part[0], error)

    # -- reading (initial load, comparisons) -----------------------------------------------------------------

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[PostgresSnapshot]:
        """A REPEATABLE READ, READ ONLY transaction: every table read through it is one consistent moment."""
        conn = psycopg.connect(self.url, connect_timeout=max(1, int(self._connect_timeout_s)))
        try:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(self.schema)))
            yield PostgresSnapshot(conn)
            conn.rollback()
        finally:
            conn.close()


class PostgresSnapshot:
    """The replicated tables as one moment of PostgreSQL (``PostgresReplica.snapshot``), for an initial load."""

    def __init__(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self._conn = conn

    def rows(self, table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
        query = sql.SQL("SELECT {} FROM {} ORDER BY 1").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table)
        )
        return [dict(zip(columns, r, strict=True)) for r in self._conn.execute(query)]

    def offers(self, chunk: int) -> Iterator[list[Offer]]:
        """Every offer in key order, ``chunk`` at a time through a server-side cursor. PostgreSQL keeps the offers'
        columns as SQLite's text, so the store's own row reader applies."""
        with self._conn.cursor(name="initial_load_offers") as cur:
            cur.itersize = chunk
            cur.execute(f"SELECT {OFFER_READ} FROM offers ORDER BY vendor_id, vendor_product_id")
            while batch := cur.fetchmany(chunk):
                yield [row_to_offer(r) for r in batch]

    def product_times(self) -> dict[str, str]:
        """Product id -> the ``updated_at`` the source node computed."""
        return {pid: at for pid, at in self._conn.execute("SELECT id, updated_at FROM products")}


_PRICE_IMAGES_COPY = sql.SQL("COPY repl_price_images FROM STDIN")

# COPY's text format, byte for byte as psycopg's write_row writes it: NULL is \N; a backslash and the control
# characters \b \t \n \v \f \r in a value are written escaped.
_ESCAPES = str.maketrans({"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r"})
# JSON text can hold those characters only escaped (orjson refuses raw control characters; \v has no short form):
# an image without these marks needs no escaping, which is nearly every image.
_NEEDS_ESCAPING = re.compile(r"\\[\\bfnrtu]")
_PLAIN = frozenset({str, int, float, type(None)})
_NULL = {None: "\\N"}


def _copy_value(value: object) -> str:
    """One value as psycopg's text dumpers write it."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES)
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, int | float):
        return repr(value)
    raise psycopg.errors.DataError(f"a captured value of type {type(value).__name__} cannot be staged: {value!r}")


def _copy_line(head: Sequence[object], values: Sequence[Any], text: str) -> str:
    """A staging row in COPY's text format, without its newline. ``text`` is the JSON the values were parsed from:
    when it holds nothing that needs escaping and the values are plain strings, numbers or nulls, they are joined
    by C code (str() of an int or a float is its repr, as psycopg writes it)."""
    start = "\t".join(map(_copy_value, head)) + "\t"
    if _NEEDS_ESCAPING.search(text) is None and set(map(type, values)) <= _PLAIN:
        return start + "\t".join(map(str, map(_NULL.get, values, values)))
    return start + "\t".join(map(_copy_value, values))


def _copy_data(lines: list[str]) -> bytes:
    lines.append("")
    return "\n".join(lines).encode()


def _price_changes(images: Sequence[Change]) -> list[str]:
    """Of several images of one offer in a batch: the first (to compare with the stored offer) and each one whose
    price, currency or availability differs from the image before it (or that follows a deletion); as COPY rows
    of ``repl_price_images`` (seq, at, first, then the columns)."""
    found: list[str] = []
    previous: tuple[Any, ...] | None = None
    for i, c in enumerate(images):
        if c.op != "U":
            previous = None
            continue
        row = orjson.loads(c.row or "{}")
        state = (row["price"], row["currency"], row["availability"])
        if i == 0 or state != previous:
            values = (row["vendor_id"], row["vendor_product_id"], row["product_id"], *state)
            found.append(_copy_line((c.seq, c.at, i == 0), values, c.row or ""))
        previous = state
    return found
