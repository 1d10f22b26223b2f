from __future__ import annotations

import pytest

from app.domain.cursor import Cursor, InvalidCursor, decode_cursor, encode_cursor, fingerprint


def test_round_trip_is_url_safe() -> None:
    fp = fingerprint({"q": "phone", "brand": None, "in_stock": True})
    token = encode_cursor(Cursor("price", (12.5, "p_abc"), fp))
    assert all(c.isalnum() or c in "-_" for c in token)
    assert decode_cursor(token, sort="price", fingerprint=fp) == Cursor("price", (12.5, "p_abc"), fp)


def test_fingerprint_ignores_unset_filters_and_key_order() -> None:
    assert fingerprint({"a": 1, "b": None}) == fingerprint({"a": 1})
    assert fingerprint({"a": 1, "c": 2}) == fingerprint({"c": 2, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


@pytest.mark.parametrize("token", ["", "not-base64!", "bm90IGpzb24", encode_cursor(Cursor("x", (), "f"))[:-3]])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(token, sort="x", fingerprint="f")


def test_cursor_for_other_filters_or_sort_is_refused() -> None:
    token = encode_cursor(Cursor("price", (1, "p"), fingerprint({"q": "a"})))
    with pytest.raises(InvalidCursor, match="other filters"):
        decode_cursor(token, sort="price", fingerprint=fingerprint({"q": "b"}))
    with pytest.raises(InvalidCursor):
        decode_cursor(token, sort="-price", fingerprint=fingerprint({"q": "a"}))
