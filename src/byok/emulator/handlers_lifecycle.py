"""Key lifecycle actions: enable, disable, deletion windows, key material deletion and key versions.

The state rules are the KMS table "Impact of CMK states on API calls" plus the
DeleteKeyMaterial and CancelKeyDeletion API references. Every state change is decided
inside the store's transaction (``Store.change_key_state``), so the rule is applied to
the state the change replaces even when several processes share one data directory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from byok.emulator import errors
from byok.emulator.calls import CallContext, Handler, format_time, integer, page, required
from byok.emulator.store import KeyStateConflict, StateDecision

if TYPE_CHECKING:
    from byok.emulator.clock import EmulatedClock
    from byok.emulator.store import KeyRecord, Store

logger = logging.getLogger(__name__)

SECONDS_PER_DAY = 86400
# ScheduleKeyDeletion PendingWindowInDays: 7 to 366 (OpenAPI metadata and
# alibabacloud-kms20160120 3.3.1); older documentation says at most 30.
MIN_PENDING_WINDOW_DAYS = 7
MAX_PENDING_WINDOW_DAYS = 366


def _allow_from(*states: str, new_state: str) -> StateDecision:
    """Return a decision that moves a key in one of ``states`` to ``new_state``, else StateModifiedFailed."""

    def decide(state: str, delete_date: float | None, has_material: bool) -> dict[str, Any]:
        if state not in states:
            raise KeyStateConflict(state)
        return {"state": new_state}

    return decide


def _schedule_deletion(delete_date: float) -> StateDecision:
    def decide(state: str, current_delete_date: float | None, has_material: bool) -> dict[str, Any]:
        if state == "PendingDeletion":
            raise KeyStateConflict(state)
        return {"state": "PendingDeletion", "delete_date": delete_date}

    return decide


def _cancel_deletion(state: str, delete_date: float | None, has_material: bool) -> dict[str, Any]:
    if state != "PendingDeletion":
        raise KeyStateConflict(state)
    # CancelKeyDeletion leaves the key Enabled (API reference). Inferred: a key whose
    # material was deleted while it was PendingDeletion returns to PendingImport.
    return {"state": "Enabled" if has_material else "PendingImport", "delete_date": None}


def _delete_material(state: str, delete_date: float | None, has_material: bool) -> dict[str, Any]:
    # A PendingDeletion key keeps its state and delete date (DeleteKeyMaterial API reference).
    updates: dict[str, Any] = {"material_expire_unix": 0, "drop_material": True}
    if state != "PendingDeletion":
        updates["state"] = "PendingImport"
    return updates


class LifecycleHandlers:
    """Mixin of KmsHandlers; relies on its store, clock and ``_resolve_key``."""

    _store: Store
    _clock: EmulatedClock

    def _resolve_key(self, context: CallContext, key_reference: str, *, accept_alias: bool = True) -> KeyRecord:
        raise NotImplementedError

    def lifecycle_actions(self) -> dict[str, Handler]:
        return {
            "EnableKey": self.enable_key,
            "DisableKey": self.disable_key,
            "ScheduleKeyDeletion": self.schedule_key_deletion,
            "CancelKeyDeletion": self.cancel_key_deletion,
            "DeleteKeyMaterial": self.delete_key_material,
            "ListKeyVersions": self.list_key_versions,
            "DescribeKeyVersion": self.describe_key_version,
        }

    def _change_state(self, context: CallContext, params: Mapping[str, str], decide: StateDecision) -> dict[str, Any]:
        key = self._resolve_key(context, required(params, "KeyId"), accept_alias=False)
        context.authorize(key.arn)
        try:
            updates = self._store.change_key_state(key.key_id, decide)
        except KeyStateConflict as conflict:
            logger.info(
                "%s rejected on key %s in state %s [RequestId %s]",
                context.action, key.key_id, conflict.state, context.request_id,
            )
            raise errors.state_modified_failed() from None
        except KeyError:
            raise errors.key_not_found() from None
        logger.info(
            "%s on key %s: %s [RequestId %s]",
            context.action, key.key_id, ", ".join(f"{name}={value}" for name, value in updates.items()), context.request_id,
        )
        return {}

    def enable_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        return self._change_state(context, params, _allow_from("Enabled", "Disabled", new_state="Enabled"))

    def disable_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        return self._change_state(context, params, _allow_from("Enabled", "Disabled", new_state="Disabled"))

    def schedule_key_deletion(self, context: CallContext, params: Mapping[str, str]) -> dict:
        required(params, "PendingWindowInDays")
        days = integer(params, "PendingWindowInDays", 0, MIN_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS)
        delete_date = self._clock.now() + days * SECONDS_PER_DAY
        result = self._change_state(context, params, _schedule_deletion(delete_date))
        logger.info("key %s will be destroyed at %s", params["KeyId"], format_time(delete_date))
        return result

    def cancel_key_deletion(self, context: CallContext, params: Mapping[str, str]) -> dict:
        return self._change_state(context, params, _cancel_deletion)

    def delete_key_material(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key = self._resolve_key(context, required(params, "KeyId"), accept_alias=False)
        context.authorize(key.arn)
        if key.origin != "EXTERNAL":
            # Inferred: DeleteKeyMaterial applies to keys with imported material only, and
            # the documents give no code for other keys.
            raise errors.unsupported_origin()
        return self._change_state(context, params, _delete_material)

    def list_key_versions(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_reference = required(params, "KeyId")
        page_number, page_size = page(params)
        key = self._resolve_key(context, key_reference)
        context.authorize(key.arn)
        versions = self._store.list_key_versions(key.key_id)
        start = (page_number - 1) * page_size
        return {
            "KeyVersions": {
                "KeyVersion": [
                    {"KeyId": v.key_id, "KeyVersionId": v.key_version_id, "CreationDate": format_time(v.creation_date)}
                    for v in versions[start:start + page_size]
                ]
            },
            "TotalCount": len(versions),
            "PageNumber": page_number,
            "PageSize": page_size,
        }

    def describe_key_version(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_reference = required(params, "KeyId")
        key_version_id = required(params, "KeyVersionId")
        key = self._resolve_key(context, key_reference)
        context.authorize(key.arn)
        for version in self._store.list_key_versions(key.key_id):
            if version.key_version_id == key_version_id:
                return {
                    "KeyVersion": {
                        "KeyId": version.key_id,
                        "KeyVersionId": version.key_version_id,
                        "CreationDate": format_time(version.creation_date),
                    }
                }
        raise errors.key_version_not_found()
