"""The replica builds COPY text rows itself (off the connection's thread, for speed); they must be exactly what
psycopg's own text formatter writes, or PostgreSQL would store something else than SQLite holds.

psycopg's formatter is private API, used here as the reference only.
"""

from __future__ import annotations

import random

import orjson
import pytest
from psycopg._copy_base import TextFormatter
from psycopg.adapt import Transformer

from app.replication.postgres.replica import _copy_line

ALPHABET = ["a", "\\", "\t", "\n", "\r", "é", "\x08", "\x0c", '"', "/", "N", "\x01", "€", "😀", " ", ",", "\\N"]


def reference(row: tuple[object, ...]) -> bytes:
    formatter = TextFormatter(Transformer(None))
    formatter.write_row(row)
    return bytes(formatter._write_buffer)


def random_value(rnd: random.Random) -> object:
    k = rnd.random()
    if k < 0.2:
        return None
    if k < 0.35:
        return rnd.randint(-(10**12), 10**12)
    if k < 0.45:
        return rnd.choice([0.1, 1e300, -2.5, 3.0, 1e-7, 12.345678901234567])
    return "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 8)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copy_lines_equal_psycopgs_own_formatting(seed: int) -> None:
    rnd = random.Random(seed)
    for _ in range(5000):
        values = [random_value(rnd) for _ in range(6)]
        text = orjson.dumps({str(i): v for i, v in enumerate(values)}).decode()
        parsed = list(orjson.loads(text).values())
        head = (rnd.randint(1, 10**9), rnd.choice("UD"), rnd.random() * 1e9, rnd.random() < 0.5)
        mine = (_copy_line(head, parsed, text) + "\n").encode()
        assert mine == reference((*head, *parsed)), (head, parsed)


def test_plain_rows_take_the_fast_path_and_still_match() -> None:
    values = ["Essence Mascara", "9.99", None, 42, 0.5, "USD"]
    text = orjson.dumps(values).decode()
    assert "\\" not in text  # no escape marks in the source JSON: the fast path
    head = (7, "U", 1.5, True)
    assert (_copy_line(head, values, text) + "\n").encode() == reference((*head, *values))


def test_escapes_are_not_lost_when_the_json_had_none() -> None:
    """A backslash or tab only ever reaches a value through an escape in its JSON, so the fast path is keyed on
    the JSON text; a value with a tab must still be escaped."""
    values = ["a\tb", "c\\d", "line\nbreak"]
    text = orjson.dumps(values).decode()
    head = (1, "U", 0.0, False)
    assert (_copy_line(head, values, text) + "\n").encode() == reference((*head, *values))
