"""PostgreSQL for the replication tests: the machine's server, or a throwaway one, and content hashes of both sides.

The machine's server (``CATALOG_TEST_PG_URL``, default 127.0.0.1:5432, trust auth, db ``test``) is used when it
answers; each test module works in its own schema, dropped afterwards, so parallel runs do not collide. When it does
not answer, one throwaway server is initialised in a temp dir for the whole session (as user postgres when we are
root: initdb refuses root) and removed at exit. When that is impossible too (no binaries: ``CATALOG_TEST_PG_BIN``,
default the newest /usr/lib/postgresql/*/bin or initdb on PATH), the tests skip and the reason names both failures.
A test that must stop PostgreSQL always gets its own throwaway server; the machine's server is never stopped.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import hashlib
import os
import random
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from psycopg import sql

from app.replication.capture import replicated_columns
from app.replication.schema import REPLICATED
from tests.support import ROOT, free_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: The replication tests' synthetic catalogs hold dozens of identically titled offers per vendor ("Widget 5"): the
#: matcher would compare each with all of them, which is a matching benchmark, not a replication test. Stores of
#: these tests (and the writer process) unify on identifiers only; tests/integration/test_sqlite_matching.py and
#: test_demo_matching.py cover matching.
MATCHING = False


def machine_url() -> str:
    return os.environ.get("CATALOG_TEST_PG_URL") or DEFAULT_URL


def pg_bin() -> Path | None:
    """Where initdb and pg_ctl are: ``CATALOG_TEST_PG_BIN``, else the newest Debian layout, else PATH."""
    if configured := os.environ.get("CATALOG_TEST_PG_BIN"):
        return Path(configured)
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: tuple(int(x) for x in p.parent.name.split(".") if x.isdigit()),
        reverse=True,
    )
    found = next((p for p in versions if (p / "initdb").exists()), None)
    if found is None and (initdb := shutil.which("initdb")):
        found = Path(initdb).parent
    return found


class NoPostgres(Exception):
    """Neither the configured server nor a throwaway one is available; the message says why, for the skip."""


def answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class ThrowawayPostgres:
    """A private PostgreSQL in a temp dir, on a free port; the test may stop and restart it."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        """Raises RuntimeError (nothing left behind) when the server cannot be set up."""
        bin_dir = bin_dir or pg_bin()
        if bin_dir is None or not (bin_dir / "initdb").exists() or not (bin_dir / "pg_ctl").exists():
            where = bin_dir or "/usr/lib/postgresql/*/bin or PATH"
            raise RuntimeError(f"no PostgreSQL binaries (initdb, pg_ctl) in {where}; set CATALOG_TEST_PG_BIN")
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="catalog-pg-"))
        self.port = free_port()
        self.data = self.dir / "data"
        try:
            os.chmod(self.dir, 0o755)
            self.data.mkdir()
            if os.geteuid() == 0:
                shutil.chown(self.dir, "postgres")
                shutil.chown(self.data, "postgres")
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync"])
            self.start()
            self._watchdog: subprocess.Popen[bytes] | None = self._watch()
        except BaseException:
            self.destroy()
            raise

    def _watch(self) -> subprocess.Popen[bytes]:
        """A shell that removes the server once this process is gone, should it die without running ``destroy``
        (atexit does not run on SIGKILL)."""
        stop = shlex.join(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]))
        script = (
            f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 2; done; "
            f"{stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.dir))}"
        )
        return subprocess.Popen(
            ["sh", "-c", script],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(_as_postgres(args), capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            [str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w", "start"]
        )

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"])

    def running(self) -> bool:
        """A postmaster runs on our data dir (pg_ctl status: 0 running, 3 not running)."""
        if not (self.data / "PG_VERSION").exists():
            return False
        try:
            done = subprocess.run(
                _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "status"]),
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory; safe to call twice."""
        if self.running():
            with contextlib.suppress(RuntimeError, OSError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait(timeout=10)
            self._watchdog = None


def pick_server(url: str, bin_dir: Path | None) -> tuple[str, ThrowawayPostgres | None]:
    """``url`` when it answers, else a new throwaway server (the caller destroys it); NoPostgres if neither."""
    if answers(url):
        return url, None
    try:
        server = ThrowawayPostgres(bin_dir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        raise NoPostgres(f"PostgreSQL at {url} does not answer and a throwaway server could not start: {exc}") from exc
    return server.url, server


_shared: ThrowawayPostgres | None = None
_chosen: str | NoPostgres | None = None


def server_url() -> str:
    """The configured server if it answers, else one throwaway server for the whole session, removed at exit.

    Decided once per session (a failure too), so every module uses the same server and a missing one costs one
    attempt, not one per module.
    """
    global _shared, _chosen
    if _chosen is None:
        try:
            _chosen, _shared = pick_server(machine_url(), pg_bin())
        except NoPostgres as exc:
            _chosen = exc
        if _shared is not None:
            atexit.register(_shared.destroy)
    if isinstance(_chosen, NoPostgres):
        pytest.skip(str(_chosen))
    return _chosen


def throwaway_server() -> ThrowawayPostgres:
    """A private server for a test that stops PostgreSQL; skips with the reason when none can start."""
    try:
        return ThrowawayPostgres()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"this test needs a throwaway PostgreSQL server and none could start: {exc}")


@contextlib.contextmanager
def fresh_schema(url: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


# -- comparing both sides -------------------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


def _digest(rows: list[tuple[Any, ...]]) -> str:
    rows.sort(key=lambda r: tuple("" if v is None else str(v) for v in r))
    return hashlib.sha256(orjson.dumps([[_canon(v) for v in r] for r in rows])).hexdigest()


def compared_columns(db_path: Path) -> dict[str, list[str]]:
    """The replicated columns, without the carried ones (``offers.fetched_at`` only travels with real changes)."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return {
            spec.name: [c.name for c in replicated_columns(conn, spec) if c.name not in spec.carried]
            for spec in REPLICATED
        }


def sqlite_digest(db_path: Path, tables: list[str] | None = None) -> dict[str, str]:
    columns = compared_columns(db_path)
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return {
            t: _digest(conn.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall())
            for t, cols in columns.items()
            if tables is None or t in tables
        }


def pg_digest(url: str, schema: str, columns: dict[str, list[str]], tables: list[str] | None = None) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        return {
            t: _digest(conn.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall())
            for t, cols in columns.items()
            if tables is None or t in tables
        }


def pg_scalar(url: str, schema: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(schema)))
        row = conn.execute(query.encode(), params).fetchone()
        return row[0] if row else None


def outbox_backlog(db_path: Path) -> int:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        return int(conn.execute("SELECT count(*) FROM repl_outbox").fetchone()[0])


def assert_in_step(db_path: Path, url: str, schema: str) -> None:
    """SQLite and PostgreSQL hold the same replicated content, the outbox is empty, and every offer's last price
    history entry is its current price (no change lost at the end of the history)."""
    assert outbox_backlog(db_path) == 0
    mine = sqlite_digest(db_path)
    theirs = pg_digest(url, schema, compared_columns(db_path))
    assert mine == theirs
    stale = pg_scalar(
        url,
        schema,
        """SELECT count(*) FROM offers o LEFT JOIN LATERAL (
               SELECT price, currency, availability FROM price_history h
               WHERE h.vendor_id = o.vendor_id AND h.vendor_product_id = o.vendor_product_id
               ORDER BY h.src_seq DESC LIMIT 1) h ON true
           WHERE h.price IS DISTINCT FROM o.price OR h.currency IS DISTINCT FROM o.currency
              OR h.availability IS DISTINCT FROM o.availability""",
    )
    assert stale == 0


# -- a second process that keeps writing ----------------------------------------------------------------------


def writer_command(db_path: Path, seconds: float, seed: int) -> list[str]:
    code = f"from tests.integration.pg import write_for; write_for({str(db_path)!r}, {seconds}, {seed})"
    return [sys.executable, "-c", code]


def start_writer(db_path: Path, seconds: float, seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(writer_command(db_path, seconds, seed), cwd=ROOT)


def write_for(db_path: str, seconds: float, seed: int) -> None:
    """Upsert offers with changing prices and availability, delete some, for ``seconds`` (through the real store)."""
    from app.domain.models import Availability, Offer
    from app.store.sqlite.catalog import SqliteCatalog

    rng = random.Random(seed)
    availabilities = [Availability.IN_STOCK, Availability.OUT_OF_STOCK, Availability.BACKORDER]

    async def run() -> None:
        store = SqliteCatalog(db_path, page_cache_size=0, matching=MATCHING)
        store.open()
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                batch = [
                    Offer(
                        vendor_id=rng.choice(["v1", "v2"]),
                        vendor_product_id=str(rng.randrange(300)),
                        title=f"Widget {rng.randrange(40)}",
                        brand="Acme",
                        price=Decimal(rng.randrange(100, 130)) / 10,
                        currency="EUR",
                        availability=rng.choice(availabilities),
                        stock=rng.randrange(5),
                    )
                    for _ in range(rng.randrange(1, 25))
                ]
                await store.upsert_offers(batch)
                if rng.random() < 0.15:
                    await store.delete_offers_of(rng.choice(["v1", "v2"]), str(rng.randrange(300)))
                await asyncio.sleep(rng.random() * 0.01)
        finally:
            store.close()

    asyncio.run(run())
