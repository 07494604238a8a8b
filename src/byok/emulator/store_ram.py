"""RAM state (API 2015-05-01): users, their AccessKeys, custom policies and attachments.

Stored in the same SQLite database as the keys. A RAM user's AccessKey secret is sealed
under the master key like the root secret. Its plaintext is returned once, by
CreateAccessKey, as the real service does.
"""

from __future__ import annotations

import logging
import secrets
import string
from dataclasses import dataclass

from byok.emulator.policy import Permissions, parse_policy_document
from byok.emulator.store import Store

logger = logging.getLogger(__name__)

_ALPHANUMERIC = string.ascii_letters + string.digits
_MAX_CACHED_PERMISSIONS = 10_000


class RamConflict(Exception):
    """The change would break a RAM rule; ``code`` is the RAM error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class RamUser:
    user_name: str
    user_id: str
    display_name: str
    mobile_phone: str
    email: str
    comments: str
    create_date: float
    update_date: float


@dataclass(frozen=True)
class RamPolicy:
    policy_name: str
    document: str
    description: str
    create_date: float


@dataclass(frozen=True)
class Attachment:
    policy_name: str
    policy_type: str
    description: str
    attach_date: float


@dataclass(frozen=True)
class UserAccessKey:
    access_key_id: str
    status: str
    create_date: float


_USER_COLUMNS = "user_name, user_id, display_name, mobile_phone, email, comments, create_date, update_date"


class RamStore:
    """RAM tables of one emulator ``Store``; every change runs in one transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._permissions: dict[tuple[str, str], Permissions] = {}
        self._permissions_generation = store.generation

    # Users.

    def create_user(self, account_id: str, user: RamUser) -> None:
        with self._store._transaction() as connection:
            if connection.execute(
                "SELECT 1 FROM ram_users WHERE account_id = ? AND user_name = ?", (account_id, user.user_name)
            ).fetchone():
                raise RamConflict("EntityAlreadyExists.User")
            connection.execute(
                f"INSERT INTO ram_users (account_id, {_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (account_id, user.user_name, user.user_id, user.display_name, user.mobile_phone, user.email,
                 user.comments, user.create_date, user.update_date),
            )

    def get_user(self, account_id: str, user_name: str) -> RamUser | None:
        row = self._store._connection.execute(
            f"SELECT {_USER_COLUMNS} FROM ram_users WHERE account_id = ? AND user_name = ?", (account_id, user_name)
        ).fetchone()
        return None if row is None else RamUser(*row)

    def delete_user(self, account_id: str, user_name: str) -> None:
        """Delete a user; raise RamConflict while it still has AccessKeys or attached policies (RAM DeleteUser)."""
        with self._store._transaction() as connection:
            if not connection.execute(
                "SELECT 1 FROM ram_users WHERE account_id = ? AND user_name = ?", (account_id, user_name)
            ).fetchone():
                raise RamConflict("EntityNotExist.User")
            if connection.execute(
                "SELECT 1 FROM ram_access_keys WHERE account_id = ? AND user_name = ?", (account_id, user_name)
            ).fetchone():
                raise RamConflict("DeleteConflict.User.AccessKey")
            if connection.execute(
                "SELECT 1 FROM ram_user_policies WHERE account_id = ? AND user_name = ?", (account_id, user_name)
            ).fetchone():
                raise RamConflict("DeleteConflict.User.Policy")
            connection.execute("DELETE FROM ram_users WHERE account_id = ? AND user_name = ?", (account_id, user_name))

    # Access keys.

    def create_access_key(self, account_id: str, user_name: str, now: float) -> tuple[str, str]:
        """Create an AccessKey for a user and return (id, secret); the secret is stored sealed only."""
        access_key_id = "LTAI" + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(20))
        secret_value = "".join(secrets.choice(_ALPHANUMERIC) for _ in range(30))
        sealed = self._store._master_key.seal(secret_value.encode("utf-8"), f"access_key/{access_key_id}")
        with self._store._transaction() as connection:
            if not connection.execute(
                "SELECT 1 FROM ram_users WHERE account_id = ? AND user_name = ?", (account_id, user_name)
            ).fetchone():
                raise RamConflict("EntityNotExist.User")
            count = connection.execute(
                "SELECT COUNT(*) FROM ram_access_keys WHERE account_id = ? AND user_name = ?", (account_id, user_name)
            ).fetchone()[0]
            # A RAM user can have at most two AccessKeys (RAM CreateAccessKey documentation).
            if count >= 2:
                raise RamConflict("LimitExceeded.User.AccessKey")
            connection.execute(
                "INSERT INTO access_keys VALUES (?, ?, ?, 'Active', 0, ?)", (access_key_id, account_id, sealed, now)
            )
            connection.execute("INSERT INTO ram_access_keys VALUES (?, ?, ?)", (access_key_id, account_id, user_name))
        logger.info("created AccessKey %s for RAM user %s", access_key_id, user_name)
        return access_key_id, secret_value

    def list_access_keys(self, account_id: str, user_name: str) -> list[UserAccessKey]:
        rows = self._store._connection.execute(
            "SELECT a.access_key_id, a.status, a.created_at FROM ram_access_keys r "
            "JOIN access_keys a ON a.access_key_id = r.access_key_id "
            "WHERE r.account_id = ? AND r.user_name = ? ORDER BY a.created_at",
            (account_id, user_name),
        ).fetchall()
        return [UserAccessKey(*row) for row in rows]

    def delete_access_key(self, account_id: str, user_name: str, access_key_id: str) -> None:
        with self._store._transaction() as connection:
            if not connection.execute(
                "SELECT 1 FROM ram_access_keys WHERE access_key_id = ? AND account_id = ? AND user_name = ?",
                (access_key_id, account_id, user_name),
            ).fetchone():
                raise RamConflict("EntityNotExist.User.AccessKey")
            connection.execute("DELETE FROM ram_access_keys WHERE access_key_id = ?", (access_key_id,))
            connection.execute("DELETE FROM access_keys WHERE access_key_id = ?", (access_key_id,))
        logger.info("deleted AccessKey %s of RAM user %s", access_key_id, user_name)

    # Policies.

    def create_policy(self, account_id: str, policy: RamPolicy) -> None:
        with self._store._transaction() as connection:
            if connection.execute(
                "SELECT 1 FROM ram_policies WHERE account_id = ? AND policy_name = ?", (account_id, policy.policy_name)
            ).fetchone():
                raise RamConflict("EntityAlreadyExists.Policy")
            connection.execute(
                "INSERT INTO ram_policies VALUES (?, ?, ?, ?, ?)",
                (account_id, policy.policy_name, policy.document, policy.description, policy.create_date),
            )

    def get_policy(self, account_id: str, policy_name: str) -> RamPolicy | None:
        row = self._store._connection.execute(
            "SELECT policy_name, document, description, create_date FROM ram_policies "
            "WHERE account_id = ? AND policy_name = ?",
            (account_id, policy_name),
        ).fetchone()
        return None if row is None else RamPolicy(*row)

    def delete_policy(self, account_id: str, policy_name: str) -> None:
        with self._store._transaction() as connection:
            if not connection.execute(
                "SELECT 1 FROM ram_policies WHERE account_id = ? AND policy_name = ?", (account_id, policy_name)
            ).fetchone():
                raise RamConflict("EntityNotExist.Policy")
            if connection.execute(
                "SELECT 1 FROM ram_user_policies WHERE account_id = ? AND policy_name = ? AND policy_type = 'Custom'",
                (account_id, policy_name),
            ).fetchone():
                raise RamConflict("DeleteConflict.Policy.User")
            connection.execute(
                "DELETE FROM ram_policies WHERE account_id = ? AND policy_name = ?", (account_id, policy_name)
            )

    def attach(self, account_id: str, user_name: str, policy_name: str, now: float) -> None:
        with self._store._transaction() as connection:
            if not connection.execute(
                "SELECT 1 FROM ram_users WHERE account_id = ? AND user_name = ?", (account_id, user_name)
            ).fetchone():
                raise RamConflict("EntityNotExist.User")
            if not connection.execute(
                "SELECT 1 FROM ram_policies WHERE account_id = ? AND policy_name = ?", (account_id, policy_name)
            ).fetchone():
                raise RamConflict("EntityNotExist.Policy")
            if connection.execute(
                "SELECT 1 FROM ram_user_policies WHERE account_id = ? AND user_name = ? AND policy_name = ? "
                "AND policy_type = 'Custom'",
                (account_id, user_name, policy_name),
            ).fetchone():
                raise RamConflict("EntityAlreadyExists.User.Policy")
            connection.execute(
                "INSERT INTO ram_user_policies VALUES (?, ?, ?, 'Custom', ?)", (account_id, user_name, policy_name, now)
            )

    def detach(self, account_id: str, user_name: str, policy_name: str) -> None:
        with self._store._transaction() as connection:
            cursor = connection.execute(
                "DELETE FROM ram_user_policies WHERE account_id = ? AND user_name = ? AND policy_name = ? "
                "AND policy_type = 'Custom'",
                (account_id, user_name, policy_name),
            )
            if cursor.rowcount == 0:
                raise RamConflict("EntityNotExist.User.Policy")

    def list_attachments(self, account_id: str, user_name: str) -> list[Attachment]:
        rows = self._store._connection.execute(
            "SELECT a.policy_name, a.policy_type, p.description, a.attach_date FROM ram_user_policies a "
            "JOIN ram_policies p ON p.account_id = a.account_id AND p.policy_name = a.policy_name "
            "WHERE a.account_id = ? AND a.user_name = ? ORDER BY a.attach_date",
            (account_id, user_name),
        ).fetchall()
        return [Attachment(*row) for row in rows]

    def permissions(self, account_id: str, user_name: str) -> Permissions:
        """Return the statements of every policy attached to the user, read in one query.

        The parsed result is cached until the store's next invalidation, that is, until
        this or another process commits any change.
        """
        if self._permissions_generation != self._store.generation:
            self._permissions.clear()
            self._permissions_generation = self._store.generation
        cached = self._permissions.get((account_id, user_name))
        if cached is not None:
            return cached
        rows = self._store._connection.execute(
            "SELECT p.document FROM ram_user_policies a JOIN ram_policies p "
            "ON p.account_id = a.account_id AND p.policy_name = a.policy_name "
            "WHERE a.account_id = ? AND a.user_name = ?",
            (account_id, user_name),
        ).fetchall()
        statements = []
        for (document,) in rows:
            statements.extend(parse_policy_document(document))
        permissions = Permissions(tuple(statements))
        if len(self._permissions) >= _MAX_CACHED_PERMISSIONS:
            self._permissions.clear()
        self._permissions[(account_id, user_name)] = permissions
        return permissions
