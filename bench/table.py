"""The one table format of the benchmarks: a measure, its value, the target and whether it was met."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    value: str
    target: str
    ok: bool | None


def print_table(rows: Sequence[Row]) -> None:
    width = max(len(r.name) for r in rows)
    vwidth = max(len(r.value) for r in rows)
    twidth = max(12, *(len(r.target) for r in rows))
    print(f"\n{'measure':<{width}}  {'value':<{vwidth}}  {'target':<{twidth}}  result")
    print(f"{'-' * width}  {'-' * vwidth}  {'-' * twidth}  ------")
    for r in rows:
        result = "" if r.ok is None else ("PASS" if r.ok else "FAIL")
        print(f"{r.name:<{width}}  {r.value:<{vwidth}}  {r.target:<{twidth}}  {result}")


def passed(rows: Sequence[Row]) -> bool:
    return all(r.ok is not False for r in rows)
