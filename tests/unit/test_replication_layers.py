"""The layering rules of replication and analytics, checked on the source: services import no database driver,
analytics endpoints import no adapter (the SQL lives in ``capture.py`` and ``postgres/``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import ROOT

DRIVERS = ("sqlite3", "psycopg", "psycopg_pool", "sqlalchemy", "alembic")
SERVICES = [
    "app/replication/pusher.py",
    "app/replication/monitor.py",
    "app/replication/initial_load.py",
    "app/replication/service.py",
    "app/analytics/service.py",
    "app/analytics/endpoints.py",
]


def imported(path: str) -> set[str]:
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", SERVICES)
def test_services_import_no_database_driver(path: str) -> None:
    assert Path(ROOT / path).exists()
    found = {name for name in imported(path) if name.split(".")[0] in DRIVERS}
    assert not found, f"{path} imports {sorted(found)}: its SQL belongs in an adapter"


def test_analytics_endpoints_import_no_adapter() -> None:
    found = {name for name in imported("app/analytics/endpoints.py") if ".postgres" in name or ".sqlite" in name}
    assert not found, found
    assert "app.analytics.service" in imported("app/analytics/endpoints.py")
