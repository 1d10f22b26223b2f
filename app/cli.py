"""The `catalog` command: run the service, the vendor simulators, and manage vendors from a shell.

Vendor and sync commands work on the SQLite file directly (the same store code the API uses), so they work
whether or not the API is running; a running API sees their changes at once (WAL, shared file).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.adapters.sqlite.catalog import SqliteCatalog
from app.api.schemas import VendorIn
from app.bootstrap import load_rates, make_source_factory
from app.domain.models import VendorKind
from app.domain.queries import SyncProgress
from app.errors import CatalogError
from app.services.sync import incremental_since, sync_vendor
from app.serving import serve_until_signal, server_config
from app.settings import Settings

cli = typer.Typer(help="Unified Vendor Catalog.", no_args_is_help=True, add_completion=False)
vendors_cli = typer.Typer(help="Manage vendors.", no_args_is_help=True)
cli.add_typer(vendors_cli, name="vendors")
console = Console()


@contextlib.asynccontextmanager
async def open_store(settings: Settings) -> AsyncIterator[SqliteCatalog]:
    # The same rates as the service: the store computes the comparable base price of every product it writes.
    store = SqliteCatalog(settings.db_path, rates=load_rates(settings))
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
        settings = settings.model_copy(update={"demo_vendors": True})
    serve_until_signal([api_config(settings, host, port)])


def api_config(settings: Settings, host: str | None = None, port: int | None = None) -> uvicorn.Config:
    from app.main import create_app

    return server_config(
        create_app(settings), host or settings.host, port or settings.port, log_level=settings.log_level
    )


@cli.command()
def simulate() -> None:
    """Run the demo vendor simulators (DummyJSON :9101, Shopify :9102, WooCommerce :9103)."""
    from app.simulators.server import DEMO_SIMULATORS, run_simulators

    run_simulators(DEMO_SIMULATORS)


@cli.command()
def demo(
    port: Annotated[int | None, typer.Option(help="API port. Default: CATALOG_PORT.")] = None,
) -> None:
    """Run the simulators and the API with the demo vendors in one process (what `make run` does)."""
    from app.simulators.server import DEMO_SIMULATORS
    from app.simulators.server import create_app as create_simulator

    settings = Settings().model_copy(update={"demo_vendors": True})
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
            currency=currency,
            credentials=creds,
            refresh_interval_s=refresh_interval_s,
        )
    except ValidationError as exc:
        raise fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None
    vendor = body.to_vendor(settings.default_refresh_interval_s)

    async def run() -> None:
        async with open_store(settings) as store:
            await store.add_vendor(vendor)

    try:
        asyncio.run(run())
    except CatalogError as exc:
        raise fail(exc.message) from None
    console.print(f"added vendor [bold]{vendor_id}[/bold]")


@cli.command()
def sync(
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
            incremental = not full and status.last_full_sync_at is not None and source.supports_changes_since
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
                        full=not incremental,
                        since=incremental_since(status.last_success_at) if incremental else None,
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


@cli.command("settings")
def settings_table() -> None:
    """Print every setting as a Markdown table (the README's table is this output)."""
    print("| Environment variable | Default | Meaning |")
    print("|---|---|---|")
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = default.value if hasattr(default, "value") else default
        print(f"| `CATALOG_{name.upper()}` | `{shown}` | {field.description or ''} |")


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
