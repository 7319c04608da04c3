"""Client API keys: `sk_sc_<id>_<secret>`, each bound to one tenant, stored as a SHA-256 digest.

The secret is 32 random bytes (256 bits) from `secrets`. A slow password hash (bcrypt, argon2)
exists to make guessing *low-entropy* passwords expensive after a database leak; a 256-bit random
key cannot be guessed at any hash speed, so one SHA-256 is as safe here and verifies in under a
microsecond on the upgrade path. The `id` is public (listing, revoking, logs) and selects the
row; the digest of the whole key is compared in constant time.

`ApiKeyStore` talks to the ledger database (the CLI, and the server's periodic refresh on a
thread); `KeyCache` is the in-memory snapshot the gate checks without any I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from sidecar.ledger.models import ApiKey

PREFIX = "sk_sc_"
_KEY = re.compile(r"sk_sc_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}")


def valid_tenant(tenant: str) -> bool:
    return TENANT.fullmatch(tenant) is not None


def generate() -> tuple[str, str]:
    """A new (id, key) pair; the key is shown once and never stored."""
    key_id = secrets.token_hex(8)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(key: str) -> str | None:
    match = _KEY.fullmatch(key)
    return match.group(1) if match else None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    tenant: str
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class _Entry:
    tenant: str
    digest: str
    revoked: bool


class KeyVerdict:
    OK = "ok"
    UNKNOWN = "invalid_api_key"
    REVOKED = "revoked_api_key"


class KeyCache:
    """What the gate consults: id → (tenant, digest, revoked). Replaced whole on refresh."""

    def __init__(self, rows: Iterable[tuple[str, str, str, bool]] = ()) -> None:
        self._entries: dict[str, _Entry] = {}
        self.replace(rows)

    def replace(self, rows: Iterable[tuple[str, str, str, bool]]) -> None:
        self._entries = {key_id: _Entry(t, d, r) for key_id, t, d, r in rows}

    def verify(self, key: str) -> tuple[str, str | None]:
        """(verdict, tenant): `KeyVerdict.OK` with the key's tenant, else why not."""
        key_id = key_id_of(key)
        entry = self._entries.get(key_id) if key_id else None
        # Compare a digest even for unknown ids, so timing does not tell which ids exist.
        expected = entry.digest if entry else "0" * 64
        matches = hmac.compare_digest(digest(key), expected)
        if entry is None or not matches:
            return KeyVerdict.UNKNOWN, None
        if entry.revoked:
            return KeyVerdict.REVOKED, None
        return KeyVerdict.OK, entry.tenant

    def usable_ids(self) -> frozenset[str]:
        """Ids of the keys that admit a client now (known and not revoked)."""
        return frozenset(k for k, entry in self._entries.items() if not entry.revoked)

    def __len__(self) -> int:
        return len(self._entries)


class ApiKeyStore:
    def __init__(self, engine: Engine, clock: Callable[[], datetime] | None = None) -> None:
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))

    def create(self, tenant: str, name: str | None = None) -> tuple[KeyInfo, str]:
        if not valid_tenant(tenant):
            raise ValueError(
                "tenant must be 1-128 characters of letters, digits and . _ : @ / - "
                "(starting with a letter or digit)"
            )
        key_id, key = generate()
        created = self.clock()
        row = ApiKey(id=key_id, tenant=tenant, digest=digest(key), name=name, created_at=created)
        with Session(self.engine) as session, session.begin():
            session.add(row)
        return KeyInfo(key_id, tenant, name, created, None), key

    def all(self, include_revoked: bool = True) -> list[KeyInfo]:
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        with Session(self.engine) as session:
            return [
                KeyInfo(r.id, r.tenant, r.name, _utc(r.created_at), _utc_or_none(r.revoked_at))
                for r in session.scalars(query)
            ]

    def revoke(self, key_id: str) -> bool:
        """True if the key existed and was live; revoking twice is harmless."""
        with Session(self.engine) as session, session.begin():
            result = session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=self.clock())
            )
            return bool(getattr(result, "rowcount", 0))

    def snapshot(self) -> list[tuple[str, str, str, bool]]:
        query = select(ApiKey.id, ApiKey.tenant, ApiKey.digest, ApiKey.revoked_at)
        with self.engine.connect() as conn:
            return [(i, t, d, r is not None) for i, t, d, r in conn.execute(query)]


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # SQLite drops the zone


def _utc_or_none(value: datetime | None) -> datetime | None:
    return None if value is None else _utc(value)
