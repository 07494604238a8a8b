"""Alias and tag actions: CreateAlias, UpdateAlias, DeleteAlias, ListAliases(ByKeyId) and key tags.

Alias rules come from the CreateAlias API reference and alibabacloud-kms20160120 3.3.1:
1 to 255 characters, prefix ``alias/``, never ``alias/acs``; an alias is unique per
account and region and points to one key. Alias operations need RAM permission on both
the alias and the key (KMS RAM guide).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from byok.emulator import errors
from byok.emulator.calls import CallContext, Handler, page, required
from byok.emulator.store import AliasExists, AliasRecord, KeyStateConflict, TagLimitExceeded

if TYPE_CHECKING:
    from byok.emulator.store import KeyRecord, Store

logger = logging.getLogger(__name__)

ALIAS_PREFIX = "alias/"
RESERVED_ALIAS_PREFIX = "alias/acs"
MAX_ALIAS_LENGTH = 255
# NOTE: the character set is inferred from the console's alias rule (letters, digits,
# underscores, hyphens and forward slashes); the API reference states only the length.
_ALIAS_CHARACTERS = re.compile(r"^[A-Za-z0-9_/\-]+$")
# NOTE: the documents disagree on the tag limit (10 per TagResource in the OpenAPI
# metadata, 20 in CreateKey); the emulator allows 20 per key.
MAX_TAGS_PER_KEY = 20
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 128
# Tag keys must not start with these reserved prefixes (TagResource API reference).
RESERVED_TAG_PREFIXES = ("aliyun", "acs:")


def _alias_name(params: Mapping[str, str]) -> str:
    name = required(params, "AliasName")
    if (
        len(name) > MAX_ALIAS_LENGTH
        or not name.startswith(ALIAS_PREFIX)
        or len(name) == len(ALIAS_PREFIX)
        or name.startswith(RESERVED_ALIAS_PREFIX)
        or not _ALIAS_CHARACTERS.match(name)
    ):
        raise errors.invalid_parameter("AliasName")
    return name


def _reject_pending_deletion_as_conflict(state: str, delete_date: float | None, has_material: bool) -> dict[str, Any]:
    # CreateAlias on a PendingDeletion key: Rejected.StateModifiedFailed (state table).
    if state == "PendingDeletion":
        raise KeyStateConflict(state)
    return {}


class _PendingDeletionTarget(Exception):
    pass


def _reject_pending_deletion_target(state: str, delete_date: float | None, has_material: bool) -> dict[str, Any]:
    # UpdateAlias depends only on the target key: PendingDeletion gives Rejected.PendingDeletion.
    if state == "PendingDeletion":
        raise _PendingDeletionTarget(state)
    return {}


def _tag_list(text: str) -> list[tuple[str, str]]:
    try:
        items = json.loads(text)
    except ValueError:
        raise errors.invalid_parameter("Tags") from None
    if not isinstance(items, list) or not items or len(items) > MAX_TAGS_PER_KEY:
        raise errors.invalid_parameter("Tags")
    tags = []
    for item in items:
        if not isinstance(item, dict):
            raise errors.invalid_parameter("Tags")
        tag_key, tag_value = item.get("TagKey"), item.get("TagValue", "")
        if not isinstance(tag_key, str) or not isinstance(tag_value, str):
            raise errors.invalid_parameter("Tags")
        if not tag_key or len(tag_key) > MAX_TAG_KEY_LENGTH or len(tag_value) > MAX_TAG_VALUE_LENGTH:
            raise errors.invalid_parameter("Tags")
        if tag_key.lower().startswith(RESERVED_TAG_PREFIXES):
            raise errors.invalid_parameter("Tags")
        tags.append((tag_key, tag_value))
    return tags


def _tag_key_list(text: str) -> list[str]:
    try:
        items = json.loads(text)
    except ValueError:
        raise errors.invalid_parameter("TagKeys") from None
    if not isinstance(items, list) or not items or not all(isinstance(item, str) and item for item in items):
        raise errors.invalid_parameter("TagKeys")
    return items


class AliasAndTagHandlers:
    """Mixin of KmsHandlers; relies on its store and ``_resolve_key``."""

    _store: Store

    def _resolve_key(self, context: CallContext, key_reference: str, *, accept_alias: bool = True) -> KeyRecord:
        raise NotImplementedError

    def alias_and_tag_actions(self) -> dict[str, Handler]:
        return {
            "CreateAlias": self.create_alias,
            "UpdateAlias": self.update_alias,
            "DeleteAlias": self.delete_alias,
            "ListAliases": self.list_aliases,
            "ListAliasesByKeyId": self.list_aliases_by_key_id,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListResourceTags": self.list_resource_tags,
        }

    def _alias_arn(self, context: CallContext, alias_name: str) -> str:
        return f"acs:kms:{context.region}:{context.account_id}:{alias_name}"

    def create_alias(self, context: CallContext, params: Mapping[str, str]) -> dict:
        alias_name = _alias_name(params)
        key = self._resolve_key(context, required(params, "KeyId"), accept_alias=False)
        context.authorize(self._alias_arn(context, alias_name), key.arn)
        try:
            self._store.create_alias(
                AliasRecord(alias_name, key.key_id, context.account_id, context.region),
                _reject_pending_deletion_as_conflict,
            )
        except AliasExists:
            raise errors.alias_already_exists() from None
        except KeyStateConflict:
            raise errors.state_modified_failed() from None
        logger.info("created alias %s for key %s [RequestId %s]", alias_name, key.key_id, context.request_id)
        return {}

    def update_alias(self, context: CallContext, params: Mapping[str, str]) -> dict:
        alias_name = _alias_name(params)
        key = self._resolve_key(context, required(params, "KeyId"), accept_alias=False)
        context.authorize(self._alias_arn(context, alias_name), key.arn)
        try:
            updated = self._store.update_alias(
                AliasRecord(alias_name, key.key_id, context.account_id, context.region),
                _reject_pending_deletion_target,
            )
        except _PendingDeletionTarget:
            raise errors.rejected_state("PendingDeletion") from None
        if not updated:
            raise errors.alias_not_found()
        logger.info("alias %s now points to key %s [RequestId %s]", alias_name, key.key_id, context.request_id)
        return {}

    def delete_alias(self, context: CallContext, params: Mapping[str, str]) -> dict:
        alias_name = _alias_name(params)
        alias = self._store.get_alias(context.account_id, context.region, alias_name)
        if alias is None:
            raise errors.alias_not_found()
        key = self._resolve_key(context, alias.key_id)
        context.authorize(alias.arn, key.arn)
        if not self._store.delete_alias(context.account_id, context.region, alias_name):
            raise errors.alias_not_found()
        logger.info("deleted alias %s of key %s [RequestId %s]", alias_name, key.key_id, context.request_id)
        return {}

    def _alias_page(self, params: Mapping[str, str], aliases: list[AliasRecord]) -> dict:
        page_number, page_size = page(params)
        start = (page_number - 1) * page_size
        return {
            "Aliases": {
                "Alias": [
                    {"KeyId": alias.key_id, "AliasName": alias.alias_name, "AliasArn": alias.arn}
                    for alias in aliases[start:start + page_size]
                ]
            },
            "TotalCount": len(aliases),
            "PageNumber": page_number,
            "PageSize": page_size,
        }

    def list_aliases(self, context: CallContext, params: Mapping[str, str]) -> dict:
        page(params)
        context.authorize(context.container_arn("alias"))
        return self._alias_page(params, self._store.list_aliases(context.account_id, context.region))

    def list_aliases_by_key_id(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_reference = required(params, "KeyId")
        page(params)
        key = self._resolve_key(context, key_reference)
        context.authorize(key.arn)
        return self._alias_page(params, self._store.list_aliases(context.account_id, context.region, key.key_id))

    def _tagged_key(self, context: CallContext, params: Mapping[str, str]) -> KeyRecord:
        for other in ("SecretName", "CertificateId"):
            if params.get(other):
                raise errors.unsupported_by_emulator(f"The byok KMS emulator tags keys only, not {other}.")
        return self._resolve_key(context, required(params, "KeyId"), accept_alias=False)

    def tag_resource(self, context: CallContext, params: Mapping[str, str]) -> dict:
        tags = _tag_list(required(params, "Tags"))
        key = self._tagged_key(context, params)
        context.authorize(key.arn)
        try:
            self._store.put_tags(key.key_id, tags, MAX_TAGS_PER_KEY)
        except TagLimitExceeded:
            raise errors.invalid_parameter("Tags") from None
        return {}

    def untag_resource(self, context: CallContext, params: Mapping[str, str]) -> dict:
        tag_keys = _tag_key_list(required(params, "TagKeys"))
        key = self._tagged_key(context, params)
        context.authorize(key.arn)
        self._store.delete_tags(key.key_id, tag_keys)
        return {}

    def list_resource_tags(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key = self._resolve_key(context, required(params, "KeyId"), accept_alias=False)
        context.authorize(key.arn)
        return {
            "Tags": {
                "Tag": [
                    {"KeyId": key.key_id, "TagKey": tag_key, "TagValue": tag_value}
                    for tag_key, tag_value in self._store.list_tags(key.key_id)
                ]
            }
        }
