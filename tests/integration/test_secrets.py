"""Vendor credentials sealed at rest (SQLite, PostgreSQL) with rotating keys, old files migrated, and a deployment
that cannot start with the public keys (issue 11)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from app.domain.models import Vendor, VendorKind
from app.secrets import PREFIX, Secrets, SecretsError, new_key
from app.settings import Settings
from app.store.sqlite.catalog import SqliteCatalog
from tests.integration.pg import fresh_schema, pg_scalar, server_url
from tests.support import (
    SHOPIFY_TOKEN,
    ApiServer,
    ServiceProcess,
    Sim,
    admin,
    fast_settings,
    run_cli,
    running_sims,
    service_env,
    sim_config,
    wait_synced,
    wait_until,
)

SECRET = "s3cr3t_never_in_clear_77"


@pytest.fixture(scope="module")
def shop() -> Iterator[Sim]:
    with running_sims(sim_config(VendorKind.SHOPIFY, size=20)) as (sim,):
        yield sim


def file_bytes(db: Path) -> bytes:
    """The SQLite file and its WAL, as an attacker who copied them would read them."""
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def stored_credentials(db: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [row[0] for row in conn.execute("SELECT credentials FROM vendors ORDER BY id")]


def test_credentials_are_sealed_in_the_sqlite_file_and_still_used(tmp_path: Path, shop: Sim) -> None:
    db = tmp_path / "catalog.db"
    with ApiServer(fast_settings(db)) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
        assert client.post("/vendors", json=shop.vendor_body("shop"), headers=admin()).status_code == 201
        assert wait_synced(client, "shop")["offers"] > 0  # the source opened the sealed token to call the shop
        assert SHOPIFY_TOKEN not in client.get("/vendors/shop").text
    assert SHOPIFY_TOKEN.encode() not in file_bytes(db)
    assert all(c.startswith(PREFIX) for c in stored_credentials(db))


def legacy_file(db: Path, secrets: Secrets) -> None:
    """A file as an older version left it: credentials in clear JSON, a password inside the base URL."""

    async def run() -> None:
        store = SqliteCatalog(db, secrets=secrets)
        store.open()
        try:
            await store.add_vendor(Vendor("old", "Old", VendorKind.SHOPIFY, "http://127.0.0.1:9", "EUR"))
        finally:
            store.close()

    asyncio.run(run())
    with contextlib.closing(sqlite3.connect(db)) as conn:
        clear = orjson.dumps({"access_token": SECRET}).decode()
        conn.execute("UPDATE vendors SET credentials = ?, base_url = 'http://bob:pw_in_url@127.0.0.1:9'", (clear,))
        conn.commit()


def test_an_older_file_with_clear_credentials_is_sealed_when_it_opens(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    secrets = Secrets([new_key()])
    legacy_file(db, secrets)
    assert SECRET.encode() in file_bytes(db)
    store = SqliteCatalog(db, secrets=secrets)
    store.open()
    try:
        vendor = store.get_vendor("old")
        assert vendor is not None
        assert dict(vendor.credentials) == {"access_token": SECRET, "url_userinfo": "bob:pw_in_url"}
        assert vendor.base_url == "http://127.0.0.1:9"
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("VACUUM")  # the old pages (and the WAL, checkpointed on close) no longer hold the clear text
    assert SECRET.encode() not in file_bytes(db) and b"pw_in_url" not in file_bytes(db)
    assert stored_credentials(db)[0].startswith(PREFIX)


def test_keys_rotate_with_the_cli_and_old_keys_can_then_go(tmp_path: Path) -> None:
    db = tmp_path / "rotate.db"
    old, new = new_key(), new_key()
    legacy_file(db, Secrets([old]))
    SqliteCatalog(db, secrets=Secrets([old])).open()  # sealed with the old key
    sealed_old = stored_credentials(db)[0]
    env = service_env(db, CATALOG_SECRET_KEYS=f"{new},{old}")
    result = run_cli(env, "secrets", "rotate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "re-sealed the credentials of 1 vendor" in result.stdout
    assert stored_credentials(db)[0] != sealed_old
    only_new = SqliteCatalog(db, secrets=Secrets([new]))
    only_new.open()
    try:
        vendor = only_new.get_vendor("old")
        assert vendor is not None and vendor.credentials["access_token"] == SECRET
    finally:
        only_new.close()
    only_old = SqliteCatalog(db, secrets=Secrets([old]))
    only_old.open()
    try:
        with pytest.raises(SecretsError, match="cannot be opened"):
            only_old.get_vendor("old")
    finally:
        only_old.close()
    assert len(run_cli(env, "secrets", "new-key").stdout.strip()) == 44


@pytest.mark.postgres
def test_postgresql_holds_the_sealed_credentials_only(tmp_path: Path, shop: Sim) -> None:
    url = server_url()
    with fresh_schema(url, "secrets") as schema:
        settings = fast_settings(tmp_path / "pg.db", database_url=url, database_schema=schema)
        with ApiServer(settings) as api, httpx.Client(base_url=api.base_url, timeout=15) as client:
            assert client.post("/vendors", json=shop.vendor_body("shop"), headers=admin()).status_code == 201

            def replicated() -> str | None:
                with contextlib.suppress(Exception):
                    value = pg_scalar(url, schema, "SELECT credentials FROM vendors WHERE id = 'shop'")
                    return str(value) if value else None
                return None

            value = wait_until(replicated, timeout=20, what="the vendor row in PostgreSQL")
        assert value.startswith(PREFIX) and SHOPIFY_TOKEN not in value


def test_repr_and_settings_never_show_secrets() -> None:
    key = new_key()
    settings = Settings(
        admin_key="adm_" + "k" * 30,
        secret_keys=[key],
        kafka_sasl_password="sasl_pw_9",
        database_url="postgresql://u:pg_pw_9@db/x",
    )
    text = repr(settings) + str(settings)
    for secret in ("adm_", key, "sasl_pw_9", "pg_pw_9"):
        assert secret not in text
    vendor = Vendor("v", "V", VendorKind.SHOPIFY, "https://s.example", "EUR", {"access_token": SECRET})
    assert SECRET not in repr(vendor) and SECRET not in str(vendor)
    assert key not in repr(Secrets([key]))


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({}, "it is the default development key"),
        ({"CATALOG_ADMIN_KEY": "short-key"}, "shorter than 24"),
        ({"CATALOG_ADMIN_KEY": "a" * 40}, "bits of entropy"),
        ({"CATALOG_ADMIN_KEY": "Zt0Q8kVbXw3LmYp7Rn2Hs9DfJc5Ua1Ge", "CATALOG_SECRET_KEYS": ""}, "CATALOG_SECRET_KEYS"),
    ],
)
def test_outside_development_the_service_refuses_to_start_with_weak_secrets(
    tmp_path: Path, overrides: dict[str, str], problem: str
) -> None:
    env = service_env(tmp_path / "prod.db", CATALOG_ENV="production", CATALOG_SECRET_KEYS=new_key())
    env.pop("CATALOG_ADMIN_KEY")
    env.update(overrides)
    process = ServiceProcess(env, tmp_path / "prod.log")
    try:
        with pytest.raises(RuntimeError, match="exited") as info:
            process.start(timeout=60)
    finally:
        process.kill()
    assert "refusing to start" in str(info.value) and problem in str(info.value)


def test_outside_development_strong_secrets_serve(tmp_path: Path) -> None:
    strong = "Zt0Q8kVbXw3LmYp7Rn2Hs9DfJc5Ua1Ge"
    env = service_env(tmp_path / "prod.db", CATALOG_ENV="production", CATALOG_ADMIN_KEY=strong)
    env["CATALOG_SECRET_KEYS"] = new_key()
    process = ServiceProcess(env, tmp_path / "prod.log").start(timeout=60)
    try:
        assert httpx.get(f"{process.base_url}/vendors", headers=admin(strong), timeout=5).status_code == 200
        body = {"id": "x", "name": "X", "kind": "dummyjson", "base_url": "https://dummyjson.com", "currency": "USD"}
        assert httpx.post(f"{process.base_url}/vendors", json=body, headers=admin("dev-admin-key")).status_code == 403
    finally:
        process.terminate()
