"""Vendor credentials sealed wherever they rest or travel: SQLite, PostgreSQL (it replicates the sealed column) and
every Kafka message (``catalog_vendors``, and so the dead letters that quote one).

One scheme everywhere: a JSON object of credentials becomes ``fernet:<token>``, a Fernet token (AES-128-CBC +
HMAC-SHA256, ``cryptography``) under a list of keys from ``CATALOG_SECRET_KEYS``. ``MultiFernet``: the first key
seals, every key opens, so keys rotate without downtime:

1. put a new key first and keep the old one after it, on every process (nodes, CLI, the Flink job); restart them;
2. ``catalog secrets rotate`` re-seals every vendor of a SQLite file with the first key (the rewritten rows replicate
   to PostgreSQL); saving a vendor re-publishes it on ``catalog_vendors`` sealed with the new key;
3. drop the old key once nothing sealed with it is left (``catalog secrets rotate`` reports what it re-sealed).

A value without the prefix is a legacy clear-text JSON object: it is still read (so existing files keep working)
and sealed the next time the store opens (``app.store.sqlite.vendors.seal_clear_credentials``).

Without keys the development key below is used: it is public (it is in this file), so ``CATALOG_ENV=production``
refuses to run without keys of its own (``Settings.check_deployment``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

if TYPE_CHECKING:
    from app.settings import Settings

PREFIX = "fernet:"
#: Public, hence for development and tests only: production refuses to start with it.
DEVELOPMENT_KEY = "ZGV2ZWxvcG1lbnQta2V5LW5vdC1wcm9kdWN0aW9uISE="


class SecretsError(ValueError):
    """Credentials that none of the configured keys opens (a key was dropped too early, or the value was altered)."""


def new_key() -> str:
    return Fernet.generate_key().decode()


def valid_key(key: str) -> bool:
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        return False
    return True


# Tokens kept opened (``Secrets.open``): one per vendor, and a rotation's old and new.
_OPENED = 1024


class Secrets:
    """Seals and opens credentials; ``repr`` tells how many keys, never a key."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretsError("no secret key configured (CATALOG_SECRET_KEYS)")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except (ValueError, TypeError) as exc:
            raise SecretsError("CATALOG_SECRET_KEYS holds a value that is not a Fernet key") from exc
        self._keys = len(keys)
        self.development = list(keys) == [DEVELOPMENT_KEY]
        # Opened tokens: a vendor's row is read (and its token opened) for every miss and page, and a token always
        # opens to the same credentials, so each is decrypted once (Fernet was 7% of an idle miss's CPU).
        self._opened: dict[str, dict[str, str]] = {}

    @classmethod
    def development_only(cls) -> Secrets:
        return cls([DEVELOPMENT_KEY])

    def __repr__(self) -> str:
        return f"Secrets({self._keys} key{'s' if self._keys != 1 else ''})"

    def seal(self, credentials: Mapping[str, str]) -> str:
        return PREFIX + self._fernet.encrypt(orjson.dumps(dict(credentials))).decode("ascii")

    def open(self, value: str | Mapping[str, str] | None) -> dict[str, str]:
        """Credentials from a sealed value; a legacy clear JSON object (or a mapping from an old message) as it is."""
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        if not value.startswith(PREFIX):
            return _plain(value)
        found = self._opened.get(value)
        if found is None:
            try:
                found = _plain(self._fernet.decrypt(value[len(PREFIX) :].encode("ascii")))
            except (InvalidToken, ValueError) as exc:
                raise SecretsError(
                    "vendor credentials cannot be opened with the configured CATALOG_SECRET_KEYS"
                ) from exc
            if len(self._opened) >= _OPENED:
                self._opened.clear()
            self._opened[value] = found
        return dict(found)

    def reseal(self, value: str) -> str:
        """The same credentials sealed with the first key (clear ones sealed for the first time)."""
        if not value.startswith(PREFIX):
            return self.seal(_plain(value))
        try:
            return PREFIX + self._fernet.rotate(value[len(PREFIX) :].encode("ascii")).decode("ascii")
        except InvalidToken as exc:
            raise SecretsError("vendor credentials cannot be opened with the configured CATALOG_SECRET_KEYS") from exc


def load_secrets(settings: Settings) -> Secrets:
    """The configured keys; in development without any, the public development key."""
    if settings.secret_keys:
        return Secrets(settings.secret_keys)
    if settings.env == "development":
        return Secrets.development_only()
    raise SecretsError(
        "CATALOG_SECRET_KEYS is required outside development (`catalog secrets new-key` makes one; see the README)"
    )


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def _plain(raw: str | bytes) -> dict[str, str]:
    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise SecretsError("credentials must be a JSON object")
    return {str(k): str(v) for k, v in data.items()}
