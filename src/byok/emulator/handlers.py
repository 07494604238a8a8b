"""Typed handlers of the KMS 2016-01-20 actions the emulator serves, with parameter validation.

Each handler takes the caller's context and the decoded request parameters, validates
every parameter before it changes anything, and returns the response fields without
RequestId. Parameter names, response shapes and error codes follow the KMS API
reference and the alibabacloud-kms20160120 3.3.1 models. Rules the documentation
leaves open are marked "inferred" where they are applied.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import secrets
import uuid
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from byok.emulator import crypto, errors
from byok.emulator.calls import (
    CallContext,
    Handler,
    base64_value,
    boolean,
    choice,
    encryption_context,
    format_time,
    integer,
    page,
    required,
)
from byok.emulator.clock import EmulatedClock
from byok.emulator.errors import ApiError
from byok.emulator.handlers_aliases import AliasAndTagHandlers
from byok.emulator.handlers_lifecycle import LifecycleHandlers
from byok.emulator.store import (
    ImportTokenRecord,
    KeyRecord,
    KeyStateConflict,
    MaterialMismatch,
    StateDecision,
    Store,
)

logger = logging.getLogger(__name__)

IMPORT_TOKEN_LIFETIME_SECONDS = 24 * 3600
IMPORT_TOKEN_BYTES = 48
AES_256_MATERIAL_BYTES = 32
MAX_PLAINTEXT_BYTES = 6144
MAX_DESCRIPTION_CHARACTERS = 8192

# KeySpec values CreateKey documents; only Aliyun_AES_256 is modelled.
DOCUMENTED_KEY_SPECS = ("Aliyun_AES_256", "Aliyun_SM4", "RSA_2048", "RSA_3072", "EC_P256", "EC_P256K", "EC_SM2")
SUPPORTED_KEY_SPEC = "Aliyun_AES_256"
ORIGINS = ("Aliyun_KMS", "EXTERNAL")
KEY_USAGES = ("ENCRYPT/DECRYPT", "SIGN/VERIFY")
PROTECTION_LEVELS = ("SOFTWARE", "HSM")
WRAPPING_KEY_SPECS = ("RSA_2048", "EC_SM2")
LIST_KEYS_FILTER_KEYS = ("KeyState", "KeySpec", "KeyUsage", "ProtectionLevel", "CreatorType")
# GenerateDataKey KeySpec values and their data key sizes in bytes. The OpenAPI metadata
# lists " AES_128" with a leading space; the documented value is AES_128.
DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}
MAX_DATA_KEY_BYTES = 1024

_ROTATION_INTERVAL = re.compile(r"^\d+[dhms]$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# Key state.

def effective_state(key: KeyRecord, now: float) -> str:
    """Return the state DescribeKey reports, with expired material shown as PendingImport.

    Inferred: the documentation says a key with expired material is unusable until the
    same material is imported again; showing PendingImport mirrors DeleteKeyMaterial.
    A PendingDeletion key keeps its state.
    """
    if key.material_expire_unix and now >= key.material_expire_unix and key.state in ("Enabled", "Disabled"):
        return "PendingImport"
    return key.state


def _expire_material(now: float) -> StateDecision:
    def decide(state: str, delete_date: float | None, has_material: bool) -> dict:
        # Inferred: expiry acts like DeleteKeyMaterial, which keeps a PendingDeletion state.
        updates: dict = {"material_expire_unix": 0, "drop_material": True}
        if state != "PendingDeletion":
            updates["state"] = "PendingImport"
        return updates

    return decide


def _require_usable(key: KeyRecord, now: float) -> None:
    """Apply the state table of Encrypt, Decrypt and GenerateDataKey: only Enabled succeeds."""
    state = effective_state(key, now)
    if state != "Enabled":
        raise errors.rejected_state(state)


class KmsHandlers(LifecycleHandlers, AliasAndTagHandlers):
    """The KMS action handlers of one emulator process."""

    def __init__(self, store: Store, clock: EmulatedClock, region: str = "cn-hangzhou") -> None:
        self._store = store
        self._clock = clock
        self._region = region
        self.actions: dict[str, Handler] = {
            "CreateKey": self.create_key,
            "DescribeKey": self.describe_key,
            "ListKeys": self.list_keys,
            "GetParametersForImport": self.get_parameters_for_import,
            "ImportKeyMaterial": self.import_key_material,
            "Encrypt": self.encrypt,
            "Decrypt": self.decrypt,
            "GenerateDataKey": self.generate_data_key,
            "GenerateDataKeyWithoutPlaintext": self.generate_data_key_without_plaintext,
            "DescribeRegions": self.describe_regions,
            **self.lifecycle_actions(),
            **self.alias_and_tag_actions(),
        }

    # Lookups.

    def _resolve_key(self, context: CallContext, key_reference: str, *, accept_alias: bool = True) -> KeyRecord:
        """Find a key by id, ARN or (where ``accept_alias``) alias name or alias ARN.

        Applies the emulated clock first: a key whose deletion window ended is destroyed
        (Forbidden.KeyNotFound), and expired material is deleted (state PendingImport).
        """
        key_id = key_reference
        if key_reference.startswith("acs:kms:"):
            parts = key_reference.split(":", 4)
            if len(parts) != 5:
                raise errors.key_not_found()
            _, _, region, account_id, resource = parts
            if resource.startswith("alias/"):
                if not accept_alias:
                    raise errors.unsupported_alias()
                if region != context.region or account_id != context.account_id:
                    raise errors.alias_not_found()
                key_id = self._alias_target(context, resource)
            elif region != context.region or account_id != context.account_id or not resource.startswith("key/"):
                raise errors.key_not_found()
            else:
                key_id = resource[len("key/"):]
        elif key_reference.startswith("alias/"):
            if not accept_alias:
                raise errors.unsupported_alias()
            key_id = self._alias_target(context, key_reference)
        key = self._store.get_key(key_id)
        if key is None or key.account_id != context.account_id or key.region != context.region:
            raise errors.key_not_found()
        return self._apply_clock(key)

    def _alias_target(self, context: CallContext, alias_name: str) -> str:
        alias = self._store.get_alias(context.account_id, context.region, alias_name)
        if alias is None:
            raise errors.alias_not_found()
        return alias.key_id

    def _apply_clock(self, key: KeyRecord) -> KeyRecord:
        """Destroy a key whose deletion window ended, or delete material that expired.

        Both happen lazily, at the first request that touches the key after the emulated
        clock passed the date. The outcome a client sees is the same as a timer's.
        """
        now = self._clock.now()
        if key.state == "PendingDeletion" and key.delete_date is not None and key.delete_date <= now:
            if self._store.destroy_key(key.key_id, now):
                raise errors.key_not_found()
        elif key.material_expire_unix and key.material_expire_unix <= now and key.state != "PendingImport":
            self._store.change_key_state(key.key_id, _expire_material(now))
            logger.info("key material of %s expired at %s", key.key_id, format_time(key.material_expire_unix))
        else:
            return key
        refreshed = self._store.get_key(key.key_id)
        if refreshed is None:
            raise errors.key_not_found()
        return refreshed

    def _key_metadata(self, key: KeyRecord, now: float, *, describe: bool) -> dict:
        state = effective_state(key, now)
        if key.material_expire_unix and state != "PendingImport":
            material_expire_time = format_time(key.material_expire_unix)
        else:
            # Inferred: the expiry is cleared once the material has expired.
            material_expire_time = ""
        metadata = {
            "Arn": key.arn,
            "AutomaticRotation": "Disabled",
            "CreationDate": format_time(key.creation_date),
            "Creator": key.account_id,
            "DKMSInstanceId": "",
            "DeleteDate": format_time(key.delete_date) if key.delete_date and state == "PendingDeletion" else "",
            "Description": key.description,
            "KeyId": key.key_id,
            "KeySpec": key.key_spec,
            "KeyState": state,
            "KeyUsage": key.key_usage,
            "LastRotationDate": "",
            "MaterialExpireTime": material_expire_time,
            "NextRotationDate": "",
            "Origin": key.origin,
            "PrimaryKeyVersion": key.primary_key_version,
            "ProtectionLevel": key.protection_level,
            "RotationInterval": "",
        }
        if describe:
            metadata["DeletionProtection"] = "Disabled"
            metadata["DeletionProtectionDescription"] = ""
        return metadata

    # Actions.

    def create_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_spec = params.get("KeySpec") or SUPPORTED_KEY_SPEC
        if key_spec not in DOCUMENTED_KEY_SPECS:
            raise errors.invalid_parameter("KeySpec")
        if key_spec != SUPPORTED_KEY_SPEC:
            raise errors.unsupported_by_emulator(
                f"The byok KMS emulator models KeySpec {SUPPORTED_KEY_SPEC} only, not {key_spec}."
            )
        key_usage = choice(params, "KeyUsage", KEY_USAGES, "ENCRYPT/DECRYPT")
        if key_usage != "ENCRYPT/DECRYPT":
            # A symmetric key cannot sign.
            raise errors.invalid_parameter("KeyUsage")
        origin = choice(params, "Origin", ORIGINS, "Aliyun_KMS")
        protection_level = choice(params, "ProtectionLevel", PROTECTION_LEVELS, "SOFTWARE")
        description = params.get("Description", "")
        if len(description) > MAX_DESCRIPTION_CHARACTERS:
            raise errors.invalid_parameter("Description")
        rotation = boolean(params, "EnableAutomaticRotation")
        rotation_interval = params.get("RotationInterval")
        if rotation_interval and not _ROTATION_INTERVAL.match(rotation_interval):
            raise errors.invalid_parameter("RotationInterval")
        if rotation and origin == "EXTERNAL":
            # Automatic rotation is documented as unavailable for EXTERNAL keys.
            raise errors.invalid_parameter("EnableAutomaticRotation")
        if rotation:
            raise errors.unsupported_by_emulator("The byok KMS emulator does not model automatic rotation.")
        for name in ("DKMSInstanceId", "Tags", "Policy", "KeyStorageMechanism"):
            if params.get(name):
                raise errors.unsupported_by_emulator(f"The byok KMS emulator does not model {name} yet.")

        context.authorize(context.container_arn("key"))
        now = self._clock.now()
        key_id = str(uuid.uuid4())
        external = origin == "EXTERNAL"
        record = KeyRecord(
            key_id=key_id,
            account_id=context.account_id,
            region=context.region,
            key_spec=key_spec,
            key_usage=key_usage,
            origin=origin,
            protection_level=protection_level,
            description=description,
            state="PendingImport" if external else "Enabled",
            creation_date=now,
            primary_key_version=str(uuid.uuid4()),
            material_expire_unix=0,
            material_fingerprint=None,
            delete_date=None,
        )
        self._store.create_key(record, None if external else secrets.token_bytes(AES_256_MATERIAL_BYTES))
        logger.info("created key %s (origin %s, state %s) [RequestId %s]", key_id, origin, record.state, context.request_id)
        return {"KeyMetadata": self._key_metadata(record, now, describe=False)}

    def describe_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key = self._resolve_key(context, required(params, "KeyId"))
        context.authorize(key.arn)
        return {"KeyMetadata": self._key_metadata(key, self._clock.now(), describe=True)}

    def list_keys(self, context: CallContext, params: Mapping[str, str]) -> dict:
        page_number, page_size = page(params)
        filters = _parse_list_keys_filters(params.get("Filters"))
        context.authorize(context.container_arn("key"))
        keys = []
        for stored in self._store.list_keys(context.account_id, context.region):
            try:
                key = self._apply_clock(stored)
            except ApiError:
                continue  # destroyed just now
            if _matches(key, filters, self._clock.now()):
                keys.append(key)
        start = (page_number - 1) * page_size
        return {
            "Keys": {"Key": [{"KeyId": key.key_id, "KeyArn": key.arn} for key in keys[start:start + page_size]]},
            "TotalCount": len(keys),
            "PageNumber": page_number,
            "PageSize": page_size,
        }

    def get_parameters_for_import(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_reference = required(params, "KeyId")
        wrapping_algorithm = required(params, "WrappingAlgorithm")
        wrapping_key_spec = required(params, "WrappingKeySpec")
        if wrapping_key_spec not in WRAPPING_KEY_SPECS:
            raise errors.invalid_parameter("WrappingKeySpec")
        if wrapping_key_spec == "EC_SM2" or wrapping_algorithm == "SM2PKE":
            raise errors.unsupported_by_emulator("The byok KMS emulator models RSA_2048 wrapping keys only.")
        if wrapping_algorithm not in crypto.WRAPPING_ALGORITHMS:
            raise errors.invalid_parameter("WrappingAlgorithm")
        key = self._resolve_key(context, key_reference, accept_alias=False)
        context.authorize(key.arn)
        if key.origin != "EXTERNAL":
            raise errors.unsupported_origin()

        # Every call issues a new key pair and token (GetParametersForImport API reference).
        private_key, public_der = crypto.generate_wrapping_key()
        token = secrets.token_bytes(IMPORT_TOKEN_BYTES)
        now = self._clock.now()
        expires_at = now + IMPORT_TOKEN_LIFETIME_SECONDS
        self._store.insert_import_token(
            hashlib.sha256(token).digest(),
            ImportTokenRecord(
                key_id=key.key_id,
                wrapping_algorithm=wrapping_algorithm,
                wrapping_key_spec=wrapping_key_spec,
                public_key_der=public_der,
                private_key_der=crypto.private_key_to_der(private_key),
                created_at=now,
                expires_at=expires_at,
            ),
        )
        logger.info(
            "issued import token for key %s (%s, %s), expires %s [RequestId %s]",
            key.key_id, wrapping_algorithm, wrapping_key_spec, format_time(expires_at), context.request_id,
        )
        return {
            "KeyId": key.key_id,
            "ImportToken": base64.b64encode(token).decode("ascii"),
            "PublicKey": base64.b64encode(public_der).decode("ascii"),
            "TokenExpireTime": format_time(expires_at),
        }

    def import_key_material(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_reference = required(params, "KeyId")
        encrypted_material = base64_value(required(params, "EncryptedKeyMaterial"), "EncryptedKeyMaterial")
        token = base64_value(required(params, "ImportToken"), "ImportToken", errors.invalid_import_token)
        # Unix seconds; missing or 0 means the material never expires (ImportKeyMaterial API reference).
        expire_unix = integer(params, "KeyMaterialExpireUnix", 0, 0)
        now = self._clock.now()
        if expire_unix and expire_unix <= now:
            raise errors.invalid_parameter("KeyMaterialExpireUnix")

        key = self._resolve_key(context, key_reference, accept_alias=False)
        context.authorize(key.arn)
        if key.origin != "EXTERNAL":
            raise errors.unsupported_origin()
        if key.state == "PendingDeletion":
            raise errors.state_modified_failed()
        token_record = self._store.get_import_token(hashlib.sha256(token).digest())
        if token_record is None or token_record.key_id != key.key_id:
            raise errors.invalid_import_token()
        if now >= token_record.expires_at:
            raise errors.expired_import_token()

        private_key = crypto.private_key_from_der(token_record.private_key_der)
        try:
            material = crypto.unwrap_key_material(private_key, token_record.wrapping_algorithm, encrypted_material)
        except crypto.UnwrapError as error:
            logger.info("key %s: unwrap failed: %s [RequestId %s]", key.key_id, error, context.request_id)
            raise errors.invalid_key_material() from None
        if len(material) != AES_256_MATERIAL_BYTES:
            logger.info(
                "key %s: material is %d bytes, %s needs %d [RequestId %s]",
                key.key_id, len(material), key.key_spec, AES_256_MATERIAL_BYTES, context.request_id,
            )
            raise errors.invalid_key_material()
        try:
            state = self._store.import_material(key.key_id, material, expire_unix)
        except MaterialMismatch:
            logger.info("key %s: re-import with material other than the bound one [RequestId %s]", key.key_id, context.request_id)
            raise errors.invalid_key_material() from None
        except KeyStateConflict:
            raise errors.state_modified_failed() from None
        logger.info(
            "imported material into key %s, state %s, expires %s [RequestId %s]",
            key.key_id, state, format_time(expire_unix) if expire_unix else "never", context.request_id,
        )
        return {}

    def encrypt(self, context: CallContext, params: Mapping[str, str]) -> dict:
        key_reference = required(params, "KeyId")
        # Plaintext is an opaque string whose UTF-8 bytes are encrypted, as Alibaba's KMS
        # transfer SDK does (encrypt_transfer_handler.py); Decrypt returns the same string.
        plaintext = required(params, "Plaintext").encode("utf-8")
        if len(plaintext) > MAX_PLAINTEXT_BYTES:
            raise errors.invalid_parameter("Plaintext")
        aad = encryption_context(params)
        dry_run = boolean(params, "DryRun")

        key, cipher = self._usable_primary(context, key_reference)
        if dry_run:
            raise errors.dry_run_operation()
        blob = crypto.encrypt_blob(cipher, key.primary_key_version, plaintext, aad)
        return {
            "KeyId": key.key_id,
            "CiphertextBlob": base64.b64encode(blob).decode("ascii"),
            "KeyVersionId": key.primary_key_version,
        }

    def decrypt(self, context: CallContext, params: Mapping[str, str]) -> dict:
        blob = base64_value(required(params, "CiphertextBlob"), "CiphertextBlob")
        aad = encryption_context(params)
        dry_run = boolean(params, "DryRun")
        # Inferred: the documentation gives no code for a malformed blob or a failed tag check;
        # InvalidParameter matches the length check of Alibaba's KMS transfer SDK.
        try:
            key_version_id, iv, ciphertext = crypto.parse_blob(blob)
        except crypto.BlobFormatError:
            raise errors.invalid_parameter("CiphertextBlob") from None
        if not _UUID.match(key_version_id):
            raise errors.invalid_parameter("CiphertextBlob")

        # Inferred: a well-formed blob of an unknown key version names a key that does not exist.
        key_id = self._store.get_version_key_id(key_version_id)
        if key_id is None:
            raise errors.key_not_found()
        key = self._resolve_key(context, key_id)
        context.authorize(key.arn)
        _require_usable(key, self._clock.now())
        entry = self._store.get_version_cipher(key_version_id)
        if entry is None:
            logger.error("key %s is Enabled but version %s has no material", key.key_id, key_version_id)
            raise errors.internal_failure()
        if dry_run:
            raise errors.dry_run_operation()
        try:
            plaintext = crypto.decrypt_blob(entry[1], iv, ciphertext, aad)
        except InvalidTag:
            raise errors.invalid_parameter("CiphertextBlob") from None
        return {
            "KeyId": key.key_id,
            "KeyVersionId": key_version_id,
            "Plaintext": plaintext.decode("utf-8", errors="replace"),
        }

    def _usable_primary(self, context: CallContext, key_reference: str) -> tuple[KeyRecord, AESGCM]:
        """Resolve and authorize an Enabled key and return it with the cipher of its primary version."""
        key = self._resolve_key(context, key_reference)
        context.authorize(key.arn)
        _require_usable(key, self._clock.now())
        entry = self._store.get_version_cipher(key.primary_key_version)
        if entry is None:
            logger.error("key %s is Enabled but version %s has no material", key.key_id, key.primary_key_version)
            raise errors.internal_failure()
        return key, entry[1]

    def _generate_data_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        """Shared part of GenerateDataKey and GenerateDataKeyWithoutPlaintext.

        The data key is returned as base64, and the CiphertextBlob encrypts that base64
        text, as Alibaba's KMS transfer SDK does (generate_data_key_transfer_handler.py).
        """
        key_reference = required(params, "KeyId")
        key_spec = params.get("KeySpec") or None
        if key_spec is not None and key_spec not in DATA_KEY_SPECS:
            raise errors.invalid_parameter("KeySpec")
        # NumberOfBytes wins over KeySpec; with neither the data key is 32 bytes.
        default_bytes = DATA_KEY_SPECS.get(key_spec or "AES_256", 32)
        number_of_bytes = integer(params, "NumberOfBytes", default_bytes, 1, MAX_DATA_KEY_BYTES)
        aad = encryption_context(params)
        dry_run = boolean(params, "DryRun")

        key, cipher = self._usable_primary(context, key_reference)
        if dry_run:
            raise errors.dry_run_operation()
        data_key_base64 = base64.b64encode(secrets.token_bytes(number_of_bytes)).decode("ascii")
        blob = crypto.encrypt_blob(cipher, key.primary_key_version, data_key_base64.encode("ascii"), aad)
        return {
            "KeyId": key.key_id,
            "KeyVersionId": key.primary_key_version,
            "CiphertextBlob": base64.b64encode(blob).decode("ascii"),
            "Plaintext": data_key_base64,
        }

    def generate_data_key(self, context: CallContext, params: Mapping[str, str]) -> dict:
        return self._generate_data_key(context, params)

    def generate_data_key_without_plaintext(self, context: CallContext, params: Mapping[str, str]) -> dict:
        result = self._generate_data_key(context, params)
        del result["Plaintext"]
        return result

    def describe_regions(self, context: CallContext, params: Mapping[str, str]) -> dict:
        # DescribeRegions needs no RAM permission (KMS RAM guide).
        # Inferred: an emulator process serves one region, so only that one is listed.
        context.authorized = True
        return {"Regions": {"Region": [{"RegionId": context.region}]}}


def _parse_list_keys_filters(text: str | None) -> list[tuple[str, frozenset[str]]]:
    """Parse ListKeys Filters: a JSON array of at most 10 {"Key": ..., "Values": [...]}."""
    if not text:
        return []
    try:
        items = json.loads(text)
    except ValueError:
        raise errors.invalid_parameter("Filters") from None
    if not isinstance(items, list) or len(items) > 10:
        raise errors.invalid_parameter("Filters")
    filters = []
    for item in items:
        if not isinstance(item, dict) or item.get("Key") not in LIST_KEYS_FILTER_KEYS:
            raise errors.invalid_parameter("Filters")
        values = item.get("Values")
        if not isinstance(values, list) or not values or not all(isinstance(value, str) for value in values):
            raise errors.invalid_parameter("Filters")
        filters.append((item["Key"], frozenset(values)))
    return filters


def _matches(key: KeyRecord, filters: list[tuple[str, frozenset[str]]], now: float) -> bool:
    for name, values in filters:
        if name == "KeyState":
            actual = effective_state(key, now)
        elif name == "KeySpec":
            actual = key.key_spec
        elif name == "KeyUsage":
            actual = key.key_usage
        elif name == "ProtectionLevel":
            actual = key.protection_level
        else:
            # Inferred: every key here is created by a user, none by a cloud service.
            actual = "User"
        if actual not in values:
            return False
    return True
