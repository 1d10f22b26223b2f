"""The `catalog` command: run the service, the vendor simulators, and manage vendors from a shell.

Vendor and sync commands work on the SQLite file directly (the same store code the API uses), so they work
whether or not the API is running; a running API sees their changes at once (WAL, shared file).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.bootstrap import load_rates, make_source_factory, vendor_service
from app.domain.models import VendorKind
from app.domain.queries import SyncProgress
from app.errors import CatalogError
from app.ingest.planning import plan_sync
from app.ingest.sync import sync_vendor
from app.secrets import SecretsError, load_secrets, new_key
from app.serving import serve_until_signal, server_config
from app.settings import Settings
from app.store.sqlite.catalog import SqliteCatalog
from app.vendors.schemas import VendorIn

cli = typer.Typer(help="Unified Vendor Catalog.", no_args_is_help=True, add_completion=False)
vendors_cli = typer.Typer(help="Manage vendors.", no_args_is_help=True)
cli.add_typer(vendors_cli, name="vendors")
sync_cli = typer.Typer(help="Sync vendors into SQLite, and SQLite into PostgreSQL.", no_args_is_help=True)
cli.add_typer(sync_cli, name="sync")
db_cli = typer.Typer(help="The PostgreSQL long-term store (DATABASE_URL).", no_args_is_help=True)
cli.add_typer(db_cli, name="db")
secrets_cli = typer.Typer(help="The keys sealing vendor credentials (CATALOG_SECRET_KEYS).", no_args_is_help=True)
cli.add_typer(secrets_cli, name="secrets")
search_cli = typer.Typer(help="The search index beside the SQLite file.", no_args_is_help=True)
cli.add_typer(search_cli, name="search")
console = Console()


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SqliteCatalog]:
    # The same rates as the service: the store computes the comparable base price of every product it writes.
    store = SqliteCatalog(settings.db_path, rates=load_rates(settings), secrets=load_secrets(settings))
    store.open()
    try:
        yield store
    finally:
        store.close()


def fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=1)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Default: CATALOG_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Default: CATALOG_PORT.")] = None,
    demo: Annotated[bool, typer.Option(help="Register the demo vendors (simulators) at start-up.")] = False,
) -> None:
    """Run the API."""

    settings = Settings()
    if demo:
        settings = demo_settings(settings)
    serve_until_signal([api_config(settings, host, port)])


def demo_settings(settings: Settings) -> Settings:
    """The demo vendors, and their simulators' address admitted by the outbound policy (loopback is private, so
    nothing else reaches it): explicitly here, never by default."""
    try:
        address = socket.gethostbyname(settings.demo_host)
    except OSError:
        address = settings.demo_host
    allow = [*settings.outbound_allow_private, address]
    update = {"demo_vendors": True, "outbound_allow_private": allow, "env": "development"}
    return settings.model_copy(update=update)


def api_config(settings: Settings, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    from app.main import create_app

    return server_config(
        create_app(settings), host or settings.host, port or settings.port, log_level=settings.log_level
    )


@cli.command()
def simulate() -> None:
    """Run the demo vendor simulators (DummyJSON :9101, Shopify :9102, WooCommerce :9103)."""
    from simulators.server import DEMO_SIMULATORS, run_simulators

    run_simulators(DEMO_SIMULATORS)


@cli.command()
def demo(
    port: Annotated[int | None, typer.Option(help="API port. Default: CATALOG_PORT.")] = None,
) -> None:
    """Run the simulators and the API with the demo vendors in one process (what `make run` does)."""
    from simulators.server import DEMO_SIMULATORS
    from simulators.server import create_app as create_simulator

    settings = demo_settings(Settings())
    simulators = [
        server_config(create_simulator(config), settings.demo_host, sim_port) for config, sim_port in DEMO_SIMULATORS
    ]
    console.print(f"API on http://{settings.host}:{port or settings.port}  (docs: /docs)")
    serve_until_signal([*simulators, api_config(settings, port=port)])


@vendors_cli.command("list")
def vendors_list() -> None:
    """List vendors with their sync status."""

    async def run() -> None:
        async with open_store(Settings()) as store:
            table = Table(
                "id",
                "name",
                "kind",
                "base_url",
                "currency",
                "enabled",
                "offers",
                "sync",
                "last success",
                "last error",
            )
            for v in store.list_vendors():
                s = store.vendor_status(v.id)
                table.add_row(
                    v.id,
                    v.name,
                    v.kind.value,
                    v.base_url,
                    v.currency,
                    str(v.enabled),
                    str(s.offers),
                    s.state,
                    str(s.last_success_at or "-"),
                    (s.last_error or "-")[:60],
                )
            console.print(table)

    asyncio.run(run())


@vendors_cli.command("add")
def vendors_add(
    vendor_id: Annotated[str, typer.Argument(help="Slug, e.g. acme-shop.")],
    kind: Annotated[VendorKind, typer.Option()],
    base_url: Annotated[str, typer.Option()],
    currency: Annotated[str, typer.Option()],
    name: Annotated[str | None, typer.Option()] = None,
    credential: Annotated[list[str] | None, typer.Option(help="key=value, repeatable.")] = None,
    refresh_interval_s: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Register a vendor (a running API syncs it on its next scheduler tick)."""
    settings = Settings()
    creds: dict[str, str] = {}
    for item in credential or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise fail(f"credential {item!r} is not key=value")
        creds[key] = value
    try:  # the API's own validation, so the CLI refuses exactly what the API refuses
        body = VendorIn(
            id=vendor_id,
            name=name or vendor_id,
            kind=kind,
            base_url=base_url,
            currency=currency.strip().upper(),  # the API takes upper case only; a shell user may type "try"
            credentials=creds,
            refresh_interval_s=refresh_interval_s,
        )
    except ValidationError as exc:
        raise fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    vendor = body.to_vendor(settings.default_refresh_interval_s)

    async def run() -> None:
        async with open_store(settings) as store:
            await vendor_service(settings, store).add(vendor)

    try:
        asyncio.run(run())
    except CatalogError as exc:
        raise fail(exc.message) from None
    console.print(f"added vendor [bold]{vendor_id}[/bold]")


@sync_cli.command("vendor")
def sync_vendor_now(
    vendor_id: str,
    full: Annotated[bool, typer.Option(help="Read the whole catalog, not only changes.")] = False,
) -> None:
    """Sync one vendor now, in this process, with a progress bar."""
    settings = Settings()

    async def run() -> SyncProgress:
        async with open_store(settings) as store:
            vendor = store.get_vendor(vendor_id)
            if vendor is None:
                raise fail(f"vendor {vendor_id!r} does not exist")
            source = make_source_factory(settings)(vendor)
            status = store.vendor_status(vendor_id)
            read_whole, since = plan_sync(full, status, source.supports_changes_since)
            columns = (
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[skipped]} skipped"),
                TimeElapsedColumn(),
            )
            with Progress(*columns, console=console) as bar:
                task = bar.add_task(vendor_id, total=None, skipped=0)

                def show(p: SyncProgress) -> None:
                    bar.update(
                        task,
                        completed=p.items_seen + p.items_skipped,
                        total=p.items_total,
                        skipped=p.items_skipped,
                    )

                try:
                    return await sync_vendor(
                        store,
                        source,
                        full=read_whole,
                        since=since,
                        page_attempts=settings.page_attempts,
                        on_progress=show,
                    )
                finally:
                    await source.aclose()

    try:
        progress = asyncio.run(run())
    except CatalogError as exc:
        raise fail(exc.message) from None
    console.print(
        f"{progress.items_seen} offers in {progress.pages} pages, {progress.items_skipped} skipped"
        + (f" {progress.skip_reasons}" if progress.skip_reasons else "")
    )


@cli.command()
def broker(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 9092,
    host: Annotated[str, typer.Option(help="Address to listen on and advertise.")] = "127.0.0.1",
    topics: Annotated[bool, typer.Option(help="Create the service's topics (CATALOG_KAFKA_* names).")] = True,
    data: Annotated[Path, typer.Option(help="Where the broker keeps topics, records and offsets.")] = Path(
        "var/broker"
    ),
    memory: Annotated[bool, typer.Option(help="Keep nothing: memory storage, empty on every start.")] = False,
) -> None:
    """Run a local Kafka-protocol broker (Tansu) in the foreground until Ctrl-C, for development.

    Its data survives a restart (kept under --data, S3 objects served by localbucket); every Kafka client can use it,
    Debian's kcat included (a proxy fixes the one answer kcat's librdkafka cannot read)."""
    import signal

    from app.distributed.kafka.admin import ensure_topics
    from app.distributed.kafka.broker import BrokerError, DevBroker

    store = None if memory else data
    log = None
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
        log = (store / "broker.log").open("ab")
    dev = DevBroker(port, host=host, data=store, log=log)
    try:
        dev.start()
    except BrokerError as exc:
        raise fail(str(exc)) from None

    def on_signal(signum: int, _frame: object) -> None:
        # Only interrupt the wait here: stopping from inside the handler would re-enter Popen.wait.
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    try:
        if topics:
            settings = Settings().model_copy(update={"kafka_bootstrap": dev.bootstrap})
            created = ensure_topics(settings, timeout_s=5)
            console.print(f"topics created: {', '.join(created) or 'none (all exist)'}")
        console.print(f"Kafka broker (Tansu) on {dev.bootstrap}, cluster id {dev.cluster_id}; Ctrl-C stops it")
        console.print(f"data: {dev.storage}")
        print(f"CATALOG_KAFKA_BOOTSTRAP={dev.bootstrap}", flush=True)
        code = dev.wait()
    except KeyboardInterrupt:
        console.print("stopping the broker")
    finally:
        dev.stop()
        if log is not None:
            log.close()
    if code:
        raise fail(f"the broker exited with {code}")


flink_cli = typer.Typer(help="The Flink ingest job of the distributed runtime (runtime=kafka).", no_args_is_help=True)
cli.add_typer(flink_cli, name="flink")


@flink_cli.command("run")
def flink_run(
    group: Annotated[str, typer.Option(help="Consumer group of the requests source.")] = "catalog-ingest",
) -> None:
    """Run the job on a local MiniCluster in the foreground (Ctrl-C stops it; the next run resumes from its last
    checkpoint, kept in var/flink-checkpoints/<group>)."""
    from app.distributed.flink.job import JobError, default_checkpoints, run

    try:
        run(Settings(), group=group, checkpoints=default_checkpoints(group))
    except JobError as exc:
        raise fail(str(exc)) from None


@flink_cli.command("submit")
def flink_submit(
    group: Annotated[str, typer.Option(help="Consumer group of the requests source.")] = "catalog-ingest",
    flink_home: Annotated[
        str | None, typer.Option(envvar="FLINK_HOME", help="Flink distribution (default: the pip-installed pyflink).")
    ] = None,
    checkpoints: Annotated[
        str | None, typer.Option(help="Checkpoints, in a folder every node can reach (var/flink-checkpoints/<group>).")
    ] = None,
) -> None:
    """Submit the job, detached, to the standalone cluster of FLINK_HOME (its conf names the job manager)."""
    from app.distributed.flink.job import submit_command

    settings = Settings()
    command, env = submit_command(settings, group=group, flink_home=flink_home, checkpoints=checkpoints)
    console.print(" ".join(command))
    raise typer.Exit(code=subprocess.run(command, env=env, check=False).returncode)


@sync_cli.command("run")
def sync_run() -> None:
    """Push this node's SQLite changes to PostgreSQL until stopped (SIGTERM/Ctrl-C): the replication loop as its
    own process. Set CATALOG_REPLICATION_PUSH=false on the API that shares the file, so only this process pushes."""
    import logging
    import signal

    from app.replication.service import build_pusher

    settings = Settings()
    if not settings.database_url:
        raise fail("DATABASE_URL is not set: nothing to push to")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The SQLite file and its schema first (this process may start before the API ever opened the file).
    store = SqliteCatalog(settings.db_path, rates=load_rates(settings), secrets=load_secrets(settings))
    store.open()
    store.close()
    pusher = build_pusher(settings)

    def on_signal(signum: int, _frame: object) -> None:
        pusher.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    pusher.outbox.open()
    try:
        pusher.run()
    finally:
        pusher.outbox.close()


@secrets_cli.command("new-key")
def secrets_new_key() -> None:
    """Print a new Fernet key (put it first in CATALOG_SECRET_KEYS, keep the old ones after it)."""
    typer.echo(new_key())


@secrets_cli.command("rotate")
def secrets_rotate() -> None:
    """Re-seal every vendor's credentials of this SQLite file with the first key of CATALOG_SECRET_KEYS (the rows
    replicate to PostgreSQL); afterwards the other keys may be dropped from this file's point of view."""

    async def run() -> int:
        async with open_store(Settings()) as store:
            return await store.reseal_credentials()

    try:
        count = asyncio.run(run())
    except SecretsError as exc:
        raise fail(str(exc)) from None
    console.print(f"re-sealed the credentials of {count} vendor(s) with the first key")


@search_cli.command("rebuild")
def search_rebuild() -> None:
    """Rebuild the search index from the SQLite file (CATALOG_SEARCH_INDEX_DIR). Stop the API first: one process
    writes the index at a time, and an API finds a missing or unusable index and rebuilds it itself."""
    import time

    from app.store.sqlite.search import CLI_REBUILD_HEAP, SearchSync, default_index_dir

    settings = Settings()
    directory = settings.search_index_dir or default_index_dir(settings.db_path)
    search = SearchSync(directory, rebuild_heap=CLI_REBUILD_HEAP)
    store = SqliteCatalog(settings.db_path, rates=load_rates(settings), secrets=load_secrets(settings), search=search)
    started = time.monotonic()
    try:
        store.open()
        count = store.rebuild_search()
    except (ValueError, RuntimeError) as exc:  # tantivy: the writer's lock file is held
        raise fail(f"cannot write the index in {directory} (is an API running on it?): {exc}") from None
    finally:
        store.close()
    console.print(f"indexed {count} products in {time.monotonic() - started:.1f} s into {directory}")


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Alembic revision.")] = "head") -> None:
    """Create or migrate the PostgreSQL tables (Alembic); the pusher also does this at start-up."""
    from app.replication.postgres.migrate import upgrade

    settings = Settings()
    if not settings.database_url:
        raise fail("DATABASE_URL is not set")
    upgrade(settings.database_url, settings.database_schema, revision)
    console.print(f"PostgreSQL schema {settings.database_schema!r} is at {revision}")


@cli.command("settings")
def settings_table() -> None:
    """Print every setting as a Markdown table (the README's table is this output)."""
    print("| Environment variable | Default | Meaning |")
    print("|---|---|---|")
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default  # type: ignore[call-arg]
        shown = default.value if hasattr(default, "value") else default
        print(f"| `CATALOG_{name.upper()}` | `{shown}` | {field.description or ''} |")


@cli.command("match")
def match_pairs(
    pairs: Annotated[
        typer.FileBinaryRead, typer.Option("--pairs", help='JSON Lines {"left": {...}, "right": {...}}; - is stdin.')
    ],
    threshold: Annotated[
        str, typer.Option(help="match: best F1 on the benchmarks; merge: the stricter one unification uses.")
    ] = "match",
    reasons: Annotated[bool, typer.Option(help="Add each decision's reasons.")] = False,
) -> None:
    """Decide, for each pair of listings, whether they are the same product: one JSON line out per line in."""
    from app.domain.matching.pairs import PairsFormatError, score_pair_lines
    from app.domain.matching.scoring import default_matcher

    if threshold not in ("match", "merge"):
        raise fail("--threshold is match or merge")
    out = typer.get_binary_stream("stdout")
    try:
        for line in score_pair_lines(pairs, default_matcher(), "merge" if threshold == "merge" else "match", reasons):
            out.write(line)
    except PairsFormatError as exc:
        raise fail(str(exc)) from None
    out.flush()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
