"""Durable state of the emulator: SQLite in WAL mode under the data directory.

Each state change runs in one ``BEGIN IMMEDIATE`` transaction, so several emulator
processes may share one data directory. Key material, wrapping private keys and
AccessKey secrets are stored sealed under the master key (see ``crypto.MasterKey``).
Import tokens are stored only as their SHA-256 hash.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import string
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from byok.emulator.crypto import MasterKey, fingerprints_equal
from byok.secrets import Secret

logger = logging.getLogger(__name__)

DATABASE_FILE_NAME = "kms.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS access_keys (
    access_key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    secret_sealed BLOB NOT NULL,
    status TEXT NOT NULL,
    is_root INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(account_id),
    region TEXT NOT NULL,
    key_spec TEXT NOT NULL,
    key_usage TEXT NOT NULL,
    origin TEXT NOT NULL,
    protection_level TEXT NOT NULL,
    description TEXT NOT NULL,
    state TEXT NOT NULL,
    creation_date REAL NOT NULL,
    primary_key_version TEXT NOT NULL,
    material_expire_unix INTEGER NOT NULL DEFAULT 0,
    material_fingerprint BLOB,
    delete_date REAL,
    sequence INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS keys_by_owner ON keys (account_id, region, sequence);
CREATE TABLE IF NOT EXISTS key_versions (
    key_version_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys(key_id),
    creation_date REAL NOT NULL,
    material_sealed BLOB
);
CREATE TABLE IF NOT EXISTS import_tokens (
    token_sha256 BLOB PRIMARY KEY,
    key_id TEXT NOT NULL REFERENCES keys(key_id),
    wrapping_algorithm TEXT NOT NULL,
    wrapping_key_spec TEXT NOT NULL,
    public_key_der BLOB NOT NULL,
    private_key_sealed BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS aliases (
    account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    alias_name TEXT NOT NULL,
    key_id TEXT NOT NULL REFERENCES keys(key_id),
    sequence INTEGER NOT NULL,
    PRIMARY KEY (account_id, region, alias_name)
);
CREATE INDEX IF NOT EXISTS aliases_by_key ON aliases (key_id);
CREATE TABLE IF NOT EXISTS ram_users (
    account_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    user_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    mobile_phone TEXT NOT NULL,
    email TEXT NOT NULL,
    comments TEXT NOT NULL,
    create_date REAL NOT NULL,
    update_date REAL NOT NULL,
    PRIMARY KEY (account_id, user_name)
);
CREATE TABLE IF NOT EXISTS ram_access_keys (
    access_key_id TEXT PRIMARY KEY REFERENCES access_keys(access_key_id),
    account_id TEXT NOT NULL,
    user_name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS ram_policies (
    account_id TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    document TEXT NOT NULL,
    description TEXT NOT NULL,
    create_date REAL NOT NULL,
    PRIMARY KEY (account_id, policy_name)
);
CREATE TABLE IF NOT EXISTS ram_user_policies (
    account_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    policy_name TEXT NOT NULL,
    policy_type TEXT NOT NULL,
    attach_date REAL NOT NULL,
    PRIMARY KEY (account_id, user_name, policy_type, policy_name)
);
CREATE TABLE IF NOT EXISTS tags (
    key_id TEXT NOT NULL REFERENCES keys(key_id),
    tag_key TEXT NOT NULL,
    tag_value TEXT NOT NULL,
    PRIMARY KEY (key_id, tag_key)
);
"""

_ALPHANUMERIC = string.ascii_letters + string.digits
_MAX_CACHED_ENTRIES = 10_000


class MaterialMismatch(Exception):
    """A re-import carries material other than the material the key was first bound to."""


class AliasExists(Exception):
    """CreateAlias named an alias that already exists in the account and region."""


class TagLimitExceeded(Exception):
    """TagResource would leave a key with more tags than the limit."""


class KeyStateConflict(Exception):
    """The key's stored state forbids the change; ``state`` names it."""

    def __init__(self, state: str) -> None:
        super().__init__(state)
        self.state = state


@dataclass(frozen=True)
class AccessKey:
    """An AccessKey; ``user_name`` is the RAM user that owns it, None for the account's root key."""

    access_key_id: str
    account_id: str
    secret: Secret
    status: str
    user_name: str | None = None


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    account_id: str
    region: str
    key_spec: str
    key_usage: str
    origin: str
    protection_level: str
    description: str
    state: str
    creation_date: float
    primary_key_version: str
    material_expire_unix: int
    material_fingerprint: bytes | None
    delete_date: float | None

    @property
    def arn(self) -> str:
        return f"acs:kms:{self.region}:{self.account_id}:key/{self.key_id}"


@dataclass(frozen=True)
class AliasRecord:
    alias_name: str
    key_id: str
    account_id: str
    region: str

    @property
    def arn(self) -> str:
        return f"acs:kms:{self.region}:{self.account_id}:{self.alias_name}"


@dataclass(frozen=True)
class KeyVersionRecord:
    key_id: str
    key_version_id: str
    creation_date: float


# Decides a state change inside the transaction: receives the stored (state, delete date,
# whether the primary version has material) and returns the columns to update.
StateDecision = Callable[[str, "float | None", bool], dict[str, Any]]


@dataclass(frozen=True)
class ImportTokenRecord:
    key_id: str
    wrapping_algorithm: str
    wrapping_key_spec: str
    public_key_der: bytes
    private_key_der: bytes
    created_at: float
    expires_at: float


_KEY_COLUMNS = (
    "key_id, account_id, region, key_spec, key_usage, origin, protection_level, description, state, "
    "creation_date, primary_key_version, material_expire_unix, material_fingerprint, delete_date"
)


class Store:
    """The emulator's SQLite database; one instance per process, used from the event loop thread.

    Reads of AccessKeys, keys, key versions and their ciphers are cached in memory.
    Callers call ``refresh`` before each request so that changes committed by another
    process sharing the data directory are seen.
    """

    def __init__(self, data_dir: Path, master_key: MasterKey) -> None:
        self._master_key = master_key
        self.path = Path(data_dir) / DATABASE_FILE_NAME
        # isolation_level=None leaves transaction control to the explicit BEGIN below.
        self._connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("PRAGMA foreign_keys=ON")
        self._connection.execute("PRAGMA busy_timeout=10000")
        # executescript commits on its own; every statement is CREATE … IF NOT EXISTS.
        self._connection.executescript(_SCHEMA)
        # Read caches, emptied by _invalidate on every commit of this process and, through
        # refresh(), on every commit of another process.
        self._access_keys: dict[str, AccessKey] = {}
        self._keys: dict[str, KeyRecord] = {}
        self._version_keys: dict[str, str] = {}
        self._version_ciphers: dict[str, tuple[str, AESGCM]] = {}
        self._data_version = self._read_data_version()
        # Incremented by every invalidation, so caches outside the store (RAM permissions)
        # can tell whether they are still current.
        self.generation = 0

    def close(self) -> None:
        self._connection.close()

    def _read_data_version(self) -> int:
        return self._connection.execute("PRAGMA data_version").fetchone()[0]

    def refresh(self) -> None:
        """Drop the read caches if another connection committed a change since the last call.

        SQLite's ``PRAGMA data_version`` changes whenever another connection (of this or
        another process) commits, and not for this connection's own commits, which
        ``_transaction`` handles. The server calls this at the start of every request.
        """
        version = self._read_data_version()
        if version != self._data_version:
            self._data_version = version
            self._invalidate()

    def _invalidate(self) -> None:
        self._access_keys.clear()
        self._keys.clear()
        self._version_keys.clear()
        self._version_ciphers.clear()
        self.generation += 1

    @staticmethod
    def _remember(cache: dict, key: str, value: Any) -> None:
        # A bound on memory, not an LRU: the caches only spare SQLite reads.
        if len(cache) >= _MAX_CACHED_ENTRIES:
            cache.clear()
        cache[key] = value

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            # Also after a rollback, in case a cached read ran inside the transaction.
            self._invalidate()
            raise
        connection.execute("COMMIT")
        self._invalidate()

    # Accounts and access keys.

    def ensure_root_account(self) -> AccessKey:
        """Return the root AccessKey, creating the account and the key on first start."""
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT access_key_id FROM access_keys WHERE is_root = 1 ORDER BY created_at LIMIT 1"
            ).fetchone()
            if row is None:
                account_id = str(secrets.randbelow(9 * 10**15) + 10**15)
                access_key_id = "LTAI" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(20))
                secret_value = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(30))
                now = time.time()
                connection.execute("INSERT INTO accounts VALUES (?, ?)", (account_id, now))
                connection.execute(
                    "INSERT INTO access_keys VALUES (?, ?, ?, 'Active', 1, ?)",
                    (
                        access_key_id,
                        account_id,
                        self._master_key.seal(secret_value.encode("utf-8"), f"access_key/{access_key_id}"),
                        now,
                    ),
                )
                logger.info("created root account %s with AccessKey id %s", account_id, access_key_id)
            else:
                access_key_id = row[0]
        access_key = self.get_access_key(access_key_id)
        assert access_key is not None
        return access_key

    def get_access_key(self, access_key_id: str) -> AccessKey | None:
        cached = self._access_keys.get(access_key_id)
        if cached is not None:
            return cached
        row = self._connection.execute(
            "SELECT a.account_id, a.secret_sealed, a.status, a.is_root, r.user_name FROM access_keys a "
            "LEFT JOIN ram_access_keys r ON r.access_key_id = a.access_key_id WHERE a.access_key_id = ?",
            (access_key_id,),
        ).fetchone()
        if row is None:
            return None
        secret_value = self._master_key.open(row[1], f"access_key/{access_key_id}").decode("utf-8")
        access_key = AccessKey(
            access_key_id, row[0], Secret(secret_value, f"AccessKey secret of {access_key_id}"), row[2], row[4]
        )
        self._remember(self._access_keys, access_key_id, access_key)
        return access_key

    # Keys.

    def create_key(self, record: KeyRecord, material: bytes | None) -> None:
        """Insert a key and its primary version, with ``material`` when KMS generates it."""
        sealed = None
        if material is not None:
            sealed = self._master_key.seal(material, f"key_version/{record.primary_key_version}")
        with self._transaction() as connection:
            sequence = connection.execute("SELECT COALESCE(MAX(sequence), 0) + 1 FROM keys").fetchone()[0]
            connection.execute(
                f"INSERT INTO keys ({_KEY_COLUMNS}, sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.key_id,
                    record.account_id,
                    record.region,
                    record.key_spec,
                    record.key_usage,
                    record.origin,
                    record.protection_level,
                    record.description,
                    record.state,
                    record.creation_date,
                    record.primary_key_version,
                    record.material_expire_unix,
                    record.material_fingerprint,
                    record.delete_date,
                    sequence,
                ),
            )
            connection.execute(
                "INSERT INTO key_versions VALUES (?, ?, ?, ?)",
                (record.primary_key_version, record.key_id, record.creation_date, sealed),
            )

    def get_key(self, key_id: str) -> KeyRecord | None:
        cached = self._keys.get(key_id)
        if cached is not None:
            return cached
        row = self._connection.execute(f"SELECT {_KEY_COLUMNS} FROM keys WHERE key_id = ?", (key_id,)).fetchone()
        if row is None:
            return None
        key = KeyRecord(*row)
        self._remember(self._keys, key_id, key)
        return key

    def list_keys(self, account_id: str, region: str) -> list[KeyRecord]:
        rows = self._connection.execute(
            f"SELECT {_KEY_COLUMNS} FROM keys WHERE account_id = ? AND region = ? ORDER BY sequence",
            (account_id, region),
        ).fetchall()
        return [KeyRecord(*row) for row in rows]

    def get_version_cipher(self, key_version_id: str) -> tuple[str, AESGCM] | None:
        """Return (key id, AES-GCM cipher) of a key version, or None if unknown or without material."""
        cached = self._version_ciphers.get(key_version_id)
        if cached is not None:
            return cached
        row = self._connection.execute(
            "SELECT key_id, material_sealed FROM key_versions WHERE key_version_id = ?", (key_version_id,)
        ).fetchone()
        if row is None or row[1] is None:
            return None
        material = self._master_key.open(row[1], f"key_version/{key_version_id}")
        entry = (row[0], AESGCM(material))
        self._remember(self._version_ciphers, key_version_id, entry)
        return entry

    # Import.

    def insert_import_token(self, token_sha256: bytes, record: ImportTokenRecord) -> None:
        sealed = self._master_key.seal(record.private_key_der, f"import_token/{token_sha256.hex()}")
        with self._transaction() as connection:
            connection.execute(
                "INSERT INTO import_tokens VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    token_sha256,
                    record.key_id,
                    record.wrapping_algorithm,
                    record.wrapping_key_spec,
                    record.public_key_der,
                    sealed,
                    record.created_at,
                    record.expires_at,
                ),
            )

    def get_import_token(self, token_sha256: bytes) -> ImportTokenRecord | None:
        row = self._connection.execute(
            "SELECT key_id, wrapping_algorithm, wrapping_key_spec, public_key_der, private_key_sealed, "
            "created_at, expires_at FROM import_tokens WHERE token_sha256 = ?",
            (token_sha256,),
        ).fetchone()
        if row is None:
            return None
        private_key_der = self._master_key.open(row[4], f"import_token/{token_sha256.hex()}")
        return ImportTokenRecord(row[0], row[1], row[2], row[3], private_key_der, row[5], row[6])

    def import_material(self, key_id: str, material: bytes, expire_unix: int) -> str:
        """Bind or re-check the key's material, set its expiry and return the new stored state.

        The first import stores the material in the primary version and its fingerprint;
        a later import must carry identical material (constant-time comparison) or raises
        MaterialMismatch. A PendingImport key becomes Enabled, Enabled and Disabled keys
        keep their state, and a PendingDeletion key raises KeyStateConflict.
        """
        fingerprint = self._master_key.material_fingerprint(key_id, material)
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT state, material_fingerprint, primary_key_version FROM keys WHERE key_id = ?", (key_id,)
            ).fetchone()
            if row is None:
                raise KeyError(key_id)
            state, bound_fingerprint, version_id = row
            if state == "PendingDeletion":
                raise KeyStateConflict(state)
            if bound_fingerprint is None:
                connection.execute(
                    "UPDATE keys SET material_fingerprint = ? WHERE key_id = ?", (fingerprint, key_id)
                )
            elif not fingerprints_equal(bound_fingerprint, fingerprint):
                raise MaterialMismatch(key_id)
            # Sealed again on every import because DeleteKeyMaterial and expiry drop the
            # stored copy; the fingerprint check above guarantees it is the same material.
            connection.execute(
                "UPDATE key_versions SET material_sealed = ? WHERE key_version_id = ?",
                (self._master_key.seal(material, f"key_version/{version_id}"), version_id),
            )
            new_state = "Enabled" if state == "PendingImport" else state
            connection.execute(
                "UPDATE keys SET state = ?, material_expire_unix = ? WHERE key_id = ?",
                (new_state, expire_unix, key_id),
            )
        return new_state

    def get_version_key_id(self, key_version_id: str) -> str | None:
        cached = self._version_keys.get(key_version_id)
        if cached is not None:
            return cached
        row = self._connection.execute(
            "SELECT key_id FROM key_versions WHERE key_version_id = ?", (key_version_id,)
        ).fetchone()
        if row is None:
            return None
        self._remember(self._version_keys, key_version_id, row[0])
        return row[0]

    # State changes. Each one reads and writes inside one BEGIN IMMEDIATE transaction, so
    # the state table is applied to the state the change actually replaces.

    def change_key_state(self, key_id: str, decide: StateDecision) -> dict[str, Any]:
        """Apply ``decide`` to the stored key and write the columns it returns.

        ``decide`` raises KeyStateConflict to reject the change. The pseudo-column
        ``drop_material`` (True) deletes the sealed material of every version of the key.
        Returns the applied updates.
        """
        with self._transaction() as connection:
            row = connection.execute(
                "SELECT k.state, k.delete_date, v.material_sealed IS NOT NULL FROM keys k "
                "JOIN key_versions v ON v.key_version_id = k.primary_key_version WHERE k.key_id = ?",
                (key_id,),
            ).fetchone()
            if row is None:
                raise KeyError(key_id)
            updates = dict(decide(row[0], row[1], bool(row[2])))
            drop_material = updates.pop("drop_material", False)
            if updates:
                assignments = ", ".join(f"{column} = ?" for column in updates)
                connection.execute(f"UPDATE keys SET {assignments} WHERE key_id = ?", (*updates.values(), key_id))
            if drop_material:
                connection.execute("UPDATE key_versions SET material_sealed = NULL WHERE key_id = ?", (key_id,))
        if drop_material:
            updates["drop_material"] = True
        return updates

    def destroy_key(self, key_id: str, now: float) -> bool:
        """Delete a PendingDeletion key whose window ended, with its versions, aliases, tags and tokens.

        Returns True if the key was destroyed by this call or earlier, False if it still exists.
        """
        with self._transaction() as connection:
            row = connection.execute("SELECT state, delete_date FROM keys WHERE key_id = ?", (key_id,)).fetchone()
            if row is None:
                return True
            state, delete_date = row
            if state != "PendingDeletion" or delete_date is None or delete_date > now:
                return False
            for table in ("aliases", "tags", "import_tokens", "key_versions"):
                connection.execute(f"DELETE FROM {table} WHERE key_id = ?", (key_id,))
            connection.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
        logger.info("destroyed key %s: its deletion window ended", key_id)
        return True

    def list_key_versions(self, key_id: str) -> list[KeyVersionRecord]:
        rows = self._connection.execute(
            "SELECT key_id, key_version_id, creation_date FROM key_versions WHERE key_id = ? "
            "ORDER BY creation_date, key_version_id",
            (key_id,),
        ).fetchall()
        return [KeyVersionRecord(*row) for row in rows]

    # Aliases.

    def get_alias(self, account_id: str, region: str, alias_name: str) -> AliasRecord | None:
        row = self._connection.execute(
            "SELECT alias_name, key_id, account_id, region FROM aliases "
            "WHERE account_id = ? AND region = ? AND alias_name = ?",
            (account_id, region, alias_name),
        ).fetchone()
        return None if row is None else AliasRecord(*row)

    def list_aliases(self, account_id: str, region: str, key_id: str | None = None) -> list[AliasRecord]:
        query = "SELECT alias_name, key_id, account_id, region FROM aliases WHERE account_id = ? AND region = ?"
        arguments: tuple[str, ...] = (account_id, region)
        if key_id is not None:
            query += " AND key_id = ?"
            arguments += (key_id,)
        rows = self._connection.execute(query + " ORDER BY sequence", arguments).fetchall()
        return [AliasRecord(*row) for row in rows]

    def create_alias(self, alias: AliasRecord, decide: StateDecision) -> None:
        """Insert an alias after ``decide`` accepted the target key's state; raise AliasExists if taken."""
        with self._transaction() as connection:
            self._check_key_state(connection, alias.key_id, decide)
            if connection.execute(
                "SELECT 1 FROM aliases WHERE account_id = ? AND region = ? AND alias_name = ?",
                (alias.account_id, alias.region, alias.alias_name),
            ).fetchone():
                raise AliasExists(alias.alias_name)
            sequence = connection.execute("SELECT COALESCE(MAX(sequence), 0) + 1 FROM aliases").fetchone()[0]
            connection.execute(
                "INSERT INTO aliases VALUES (?, ?, ?, ?, ?)",
                (alias.account_id, alias.region, alias.alias_name, alias.key_id, sequence),
            )

    def update_alias(self, alias: AliasRecord, decide: StateDecision) -> bool:
        """Point an existing alias at another key; return False if the alias does not exist."""
        with self._transaction() as connection:
            self._check_key_state(connection, alias.key_id, decide)
            cursor = connection.execute(
                "UPDATE aliases SET key_id = ? WHERE account_id = ? AND region = ? AND alias_name = ?",
                (alias.key_id, alias.account_id, alias.region, alias.alias_name),
            )
            return cursor.rowcount == 1

    def delete_alias(self, account_id: str, region: str, alias_name: str) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                "DELETE FROM aliases WHERE account_id = ? AND region = ? AND alias_name = ?",
                (account_id, region, alias_name),
            )
            return cursor.rowcount == 1

    @staticmethod
    def _check_key_state(connection: sqlite3.Connection, key_id: str, decide: StateDecision) -> None:
        row = connection.execute(
            "SELECT k.state, k.delete_date, v.material_sealed IS NOT NULL FROM keys k "
            "JOIN key_versions v ON v.key_version_id = k.primary_key_version WHERE k.key_id = ?",
            (key_id,),
        ).fetchone()
        if row is None:
            raise KeyError(key_id)
        decide(row[0], row[1], bool(row[2]))

    # Tags.

    def list_tags(self, key_id: str) -> list[tuple[str, str]]:
        rows = self._connection.execute(
            "SELECT tag_key, tag_value FROM tags WHERE key_id = ? ORDER BY tag_key", (key_id,)
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    def put_tags(self, key_id: str, tags: list[tuple[str, str]], limit: int) -> None:
        """Add or overwrite tags; raise TagLimitExceeded if the key would have more than ``limit``."""
        with self._transaction() as connection:
            for tag_key, tag_value in tags:
                connection.execute(
                    "INSERT INTO tags VALUES (?, ?, ?) ON CONFLICT (key_id, tag_key) DO UPDATE SET tag_value = excluded.tag_value",
                    (key_id, tag_key, tag_value),
                )
            count = connection.execute("SELECT COUNT(*) FROM tags WHERE key_id = ?", (key_id,)).fetchone()[0]
            if count > limit:
                raise TagLimitExceeded(key_id)

    def delete_tags(self, key_id: str, tag_keys: list[str]) -> None:
        with self._transaction() as connection:
            connection.executemany("DELETE FROM tags WHERE key_id = ? AND tag_key = ?", [(key_id, k) for k in tag_keys])
