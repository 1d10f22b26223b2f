from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.store.sqlite.catalog import SqliteCatalog


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteCatalog]:
    catalog = SqliteCatalog(tmp_path / "catalog.db")
    catalog.open()
    yield catalog
    catalog.close()
