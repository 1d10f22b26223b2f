"""The README's settings table is `catalog settings`' output: a setting added, renamed or re-described without
regenerating the table fails here instead of leaving the README wrong."""

from __future__ import annotations

from typer.testing import CliRunner

from app.cli import cli
from tests.support import ROOT


def test_the_readme_settings_table_is_the_output_of_catalog_settings() -> None:
    result = CliRunner().invoke(cli, ["settings"])
    assert result.exit_code == 0, result.output
    table = [line for line in result.output.splitlines() if line.startswith("|")]
    readme = (ROOT / "README.md").read_text()
    start = readme.index(table[0])
    shown = readme[start:].split("\n\n", 1)[0].splitlines()
    assert shown == table, "regenerate the README's table: .venv/bin/catalog settings"
