"""``Secrets.open`` decrypts a token once: a vendor's row is opened for every miss and page."""

from __future__ import annotations

import pytest

from app.secrets import Secrets, SecretsError, new_key


def test_a_token_is_decrypted_once_and_each_caller_gets_its_own_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = Secrets([new_key()])
    token = secrets.seal({"token": "s3cret"})
    calls = {"n": 0}
    real = secrets._fernet.decrypt

    def counting(data: bytes) -> bytes:
        calls["n"] += 1
        return real(data)

    monkeypatch.setattr(secrets._fernet, "decrypt", counting)
    first = secrets.open(token)
    first["token"] = "changed by a caller"
    assert secrets.open(token) == {"token": "s3cret"}
    assert calls["n"] == 1
    assert secrets.open(secrets.seal({"token": "other"})) == {"token": "other"}
    assert calls["n"] == 2


def test_a_token_of_another_key_still_fails_every_time() -> None:
    token = Secrets([new_key()]).seal({"token": "s3cret"})
    mine = Secrets([new_key()])
    for _ in range(2):
        with pytest.raises(SecretsError):
            mine.open(token)
