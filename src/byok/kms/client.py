"""Alibaba Cloud KMS (API 2016-01-20) client over aliyun-python-sdk-kms.

The client returns typed results and turns every error response into one exception
type, ``byok.errors.KmsError``, with the service's Code, Message, HTTP status and
RequestId. SDK retries are off, so a fault the service or the emulator reports is
seen exactly once and recorded as it happened.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import RpcRequest
from aliyunsdkkms.request.v20160120 import (
    CancelKeyDeletionRequest,
    CreateAliasRequest,
    CreateKeyRequest,
    DecryptRequest,
    DeleteAliasRequest,
    DeleteKeyMaterialRequest,
    DescribeKeyRequest,
    DescribeKeyVersionRequest,
    DescribeRegionsRequest,
    DisableKeyRequest,
    EnableKeyRequest,
    EncryptRequest,
    GenerateDataKeyRequest,
    GenerateDataKeyWithoutPlaintextRequest,
    GetParametersForImportRequest,
    ImportKeyMaterialRequest,
    ListAliasesByKeyIdRequest,
    ListAliasesRequest,
    ListKeysRequest,
    ListKeyVersionsRequest,
    ListResourceTagsRequest,
    ScheduleKeyDeletionRequest,
    TagResourceRequest,
    UntagResourceRequest,
    UpdateAliasRequest,
)

from byok.errors import ConfigError, KmsError, KmsTransportError
from byok.secrets import Secret

logger = logging.getLogger(__name__)

# The SignatureDoesNotMatch message carries the server's string to sign, which
# contains every request parameter (import token and wrapped material included).
_STRING_TO_SIGN_MARKER = "server string to sign is:"


@dataclass(frozen=True)
class KmsEndpoint:
    """Destination of KMS requests: host, port and protocol (plain HTTP only to loopback)."""

    host: str
    port: int
    protocol: str

    @classmethod
    def parse(cls, endpoint: str) -> KmsEndpoint:
        """Parse ``kms.<region>.aliyuncs.com`` or ``http://127.0.0.1:PORT``.

        Plain HTTP is accepted only for loopback addresses, where the byok emulator runs.
        """
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"KMS endpoint {endpoint!r} is not a host name or an http(s) URL",
                fix="use kms.<region>.aliyuncs.com, or the endpoint the emulator's ready file gives",
            )
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ConfigError(
                f"KMS endpoint {endpoint!r} uses plain HTTP to a non-loopback host",
                fix="use https for any endpoint other than the local emulator",
            )
        default_port = 443 if parts.scheme == "https" else 80
        return cls(host=parts.hostname, port=parts.port or default_port, protocol=parts.scheme)


@dataclass(frozen=True)
class KeyMetadata:
    key_id: str
    arn: str
    key_state: str
    key_spec: str
    key_usage: str
    origin: str
    protection_level: str
    creation_date: str
    material_expire_time: str
    description: str
    primary_key_version: str
    creator: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_response(cls, body: dict[str, Any]) -> KeyMetadata:
        meta = body.get("KeyMetadata")
        if not isinstance(meta, dict):
            raise KmsTransportError(f"response has no KeyMetadata object (fields: {sorted(body)})")
        return cls(
            key_id=meta.get("KeyId", ""),
            arn=meta.get("Arn", ""),
            key_state=meta.get("KeyState", ""),
            key_spec=meta.get("KeySpec", ""),
            key_usage=meta.get("KeyUsage", ""),
            origin=meta.get("Origin", ""),
            protection_level=meta.get("ProtectionLevel", ""),
            creation_date=meta.get("CreationDate", ""),
            material_expire_time=meta.get("MaterialExpireTime", "") or "",
            description=meta.get("Description", ""),
            primary_key_version=meta.get("PrimaryKeyVersion", ""),
            creator=meta.get("Creator", ""),
            raw=meta,
        )


@dataclass(frozen=True)
class KeyResult:
    metadata: KeyMetadata
    request_id: str


@dataclass(frozen=True)
class ImportParameters:
    """GetParametersForImport output. The ImportToken is a secret and stays wrapped."""

    key_id: str
    public_key: str
    import_token: Secret
    token_expire_time: str
    wrapping_algorithm: str
    wrapping_key_spec: str
    request_id: str


@dataclass(frozen=True)
class EncryptResult:
    key_id: str
    key_version_id: str
    ciphertext_blob: str
    request_id: str


@dataclass(frozen=True)
class DecryptResult:
    key_id: str
    key_version_id: str
    plaintext: str
    request_id: str


@dataclass(frozen=True)
class ListKeysResult:
    keys: list[dict[str, str]]
    total_count: int
    page_number: int
    page_size: int
    request_id: str


@dataclass(frozen=True)
class DataKeyResult:
    """GenerateDataKey output. ``plaintext`` (base64 of the data key) is None for WithoutPlaintext."""

    key_id: str
    key_version_id: str
    ciphertext_blob: str
    plaintext: Secret | None
    request_id: str


@dataclass(frozen=True)
class Alias:
    alias_name: str
    alias_arn: str
    key_id: str


@dataclass(frozen=True)
class ListAliasesResult:
    aliases: list[Alias]
    total_count: int
    page_number: int
    page_size: int
    request_id: str


@dataclass(frozen=True)
class KeyVersion:
    key_id: str
    key_version_id: str
    creation_date: str


@dataclass(frozen=True)
class ListKeyVersionsResult:
    versions: list[KeyVersion]
    total_count: int
    page_number: int
    page_size: int
    request_id: str


class _SdkLogFilter(logging.Filter):
    """Keep request parameters out of aliyun-python-sdk-core's own log records.

    The SDK logs every response body at debug level (an ImportToken or a Decrypt
    plaintext among them) before byok has wrapped any value as a Secret, and logs each
    SignatureDoesNotMatch at error level with the server's string to sign, which contains
    every request parameter. Debug records are dropped and the string to sign is cut.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return False
        message = record.getMessage()
        if _STRING_TO_SIGN_MARKER in message:
            record.msg = redact_service_message(message)
            record.args = None
        return True


# A logger's filters see only the records that logger creates, so the filter goes on
# each module logger of aliyun-python-sdk-core 2.16 as well as on the package logger.
for _name in ("aliyunsdkcore", "aliyunsdkcore.client", "aliyunsdkcore.http.http_response", "aliyunsdkcore.retry.retry_condition"):
    logging.getLogger(_name).addFilter(_SdkLogFilter())


class _AcsClientWithHeaders(AcsClient):
    """AcsClient that keeps the response headers of its last call.

    ``do_action_with_exception`` returns only the body; the headers, and with them the
    service's clock in ``Date``, come from ``_implementation_of_do_action``, a private
    method of aliyun-python-sdk-core 2.16. tests/test_kms_client.py checks that the
    header still arrives, so an SDK change that breaks this is noticed.
    """

    last_response_headers: dict[str, str]

    def _implementation_of_do_action(self, request, signer=None):
        status, headers, body, exception = super()._implementation_of_do_action(request, signer)
        self.last_response_headers = {str(name).lower(): str(value) for name, value in dict(headers or {}).items()}
        return status, headers, body, exception


@dataclass(frozen=True)
class CallRecord:
    """Record of one request for evidence: its identifiers and outcome, never its parameters."""

    action: str
    request_id: str | None
    http_status: int | None
    error_code: str | None
    duration_ms: float
    server_time: str | None = None


class KmsClient:
    """KMS 2016-01-20 operations used by the BYOK flow."""

    def __init__(
        self,
        *,
        endpoint: str,
        region: str,
        access_key_id: str,
        access_key_secret: Secret,
        timeout_seconds: float = 30.0,
    ) -> None:
        self.endpoint = KmsEndpoint.parse(endpoint)
        self.region = region
        self.access_key_id = access_key_id
        self.calls: list[CallRecord] = []
        self.last_server_time: datetime | None = None
        self._server_time_received = 0.0
        self._client = _AcsClientWithHeaders(
            ak=access_key_id,
            secret=access_key_secret.reveal(),
            region_id=region,
            auto_retry=False,
            max_retry_time=0,
            port=self.endpoint.port,
            connect_timeout=int(timeout_seconds),
            timeout=int(timeout_seconds),
        )

    def __repr__(self) -> str:
        return f"KmsClient(endpoint={self.endpoint.protocol}://{self.endpoint.host}:{self.endpoint.port}, region={self.region!r})"

    # -- key management ---------------------------------------------------------------

    def create_key(
        self,
        *,
        origin: str = "EXTERNAL",
        key_spec: str = "Aliyun_AES_256",
        key_usage: str = "ENCRYPT/DECRYPT",
        protection_level: str = "SOFTWARE",
        description: str = "",
    ) -> KeyResult:
        request = CreateKeyRequest.CreateKeyRequest()
        request.set_Origin(origin)
        request.set_KeySpec(key_spec)
        request.set_KeyUsage(key_usage)
        request.set_ProtectionLevel(protection_level)
        if description:
            request.set_Description(description)
        body = self._call("CreateKey", request)
        return KeyResult(KeyMetadata.from_response(body), body.get("RequestId", ""))

    def describe_key(self, key_id: str) -> KeyResult:
        request = DescribeKeyRequest.DescribeKeyRequest()
        request.set_KeyId(key_id)
        body = self._call("DescribeKey", request)
        return KeyResult(KeyMetadata.from_response(body), body.get("RequestId", ""))

    def list_keys(self, *, page_number: int = 1, page_size: int = 100) -> ListKeysResult:
        request = ListKeysRequest.ListKeysRequest()
        request.set_PageNumber(page_number)
        request.set_PageSize(page_size)
        body = self._call("ListKeys", request)
        keys = (body.get("Keys") or {}).get("Key") or []
        return ListKeysResult(
            keys=keys,
            total_count=int(body.get("TotalCount", 0)),
            page_number=int(body.get("PageNumber", page_number)),
            page_size=int(body.get("PageSize", page_size)),
            request_id=body.get("RequestId", ""),
        )

    def schedule_key_deletion(self, key_id: str, pending_window_in_days: int) -> str:
        request = ScheduleKeyDeletionRequest.ScheduleKeyDeletionRequest()
        request.set_KeyId(key_id)
        request.set_PendingWindowInDays(pending_window_in_days)
        return self._call("ScheduleKeyDeletion", request).get("RequestId", "")

    # -- import -------------------------------------------------------------------------

    def get_parameters_for_import(
        self, key_id: str, *, wrapping_algorithm: str, wrapping_key_spec: str = "RSA_2048"
    ) -> ImportParameters:
        request = GetParametersForImportRequest.GetParametersForImportRequest()
        request.set_KeyId(key_id)
        request.set_WrappingAlgorithm(wrapping_algorithm)
        request.set_WrappingKeySpec(wrapping_key_spec)
        body = self._call("GetParametersForImport", request)
        for name in ("KeyId", "ImportToken", "PublicKey", "TokenExpireTime"):
            if not body.get(name):
                raise KmsTransportError(f"GetParametersForImport response has no {name}")
        return ImportParameters(
            key_id=body["KeyId"],
            public_key=body["PublicKey"],
            import_token=Secret(body["ImportToken"], f"ImportToken for {body['KeyId']}"),
            token_expire_time=body["TokenExpireTime"],
            wrapping_algorithm=wrapping_algorithm,
            wrapping_key_spec=wrapping_key_spec,
            request_id=body.get("RequestId", ""),
        )

    def import_key_material(
        self,
        key_id: str,
        *,
        encrypted_key_material: str,
        import_token: Secret,
        key_material_expire_unix: int = 0,
    ) -> str:
        """Send ImportKeyMaterial; ``key_material_expire_unix`` 0 means the material never expires."""
        request = ImportKeyMaterialRequest.ImportKeyMaterialRequest()
        request.set_KeyId(key_id)
        request.set_EncryptedKeyMaterial(encrypted_key_material)
        request.set_ImportToken(import_token.reveal())
        request.set_KeyMaterialExpireUnix(int(key_material_expire_unix))
        return self._call("ImportKeyMaterial", request).get("RequestId", "")

    def delete_key_material(self, key_id: str) -> str:
        request = DeleteKeyMaterialRequest.DeleteKeyMaterialRequest()
        request.set_KeyId(key_id)
        return self._call("DeleteKeyMaterial", request).get("RequestId", "")

    # -- cryptographic operations ------------------------------------------------------------

    def encrypt(self, key_id: str, plaintext: str, *, encryption_context: dict[str, str] | None = None) -> EncryptResult:
        request = EncryptRequest.EncryptRequest()
        request.set_KeyId(key_id)
        request.set_Plaintext(plaintext)
        if encryption_context:
            request.set_EncryptionContext(json.dumps(encryption_context, separators=(",", ":"), sort_keys=True))
        body = self._call("Encrypt", request)
        return EncryptResult(
            key_id=body.get("KeyId", ""),
            key_version_id=body.get("KeyVersionId", ""),
            ciphertext_blob=body.get("CiphertextBlob", ""),
            request_id=body.get("RequestId", ""),
        )

    def decrypt(self, ciphertext_blob: str, *, encryption_context: dict[str, str] | None = None) -> DecryptResult:
        request = DecryptRequest.DecryptRequest()
        request.set_CiphertextBlob(ciphertext_blob)
        if encryption_context:
            request.set_EncryptionContext(json.dumps(encryption_context, separators=(",", ":"), sort_keys=True))
        body = self._call("Decrypt", request)
        return DecryptResult(
            key_id=body.get("KeyId", ""),
            key_version_id=body.get("KeyVersionId", ""),
            plaintext=body.get("Plaintext", ""),
            request_id=body.get("RequestId", ""),
        )

    def generate_data_key(
        self,
        key_id: str,
        *,
        key_spec: str | None = None,
        number_of_bytes: int | None = None,
        encryption_context: dict[str, str] | None = None,
        with_plaintext: bool = True,
    ) -> DataKeyResult:
        """Send GenerateDataKey, or GenerateDataKeyWithoutPlaintext when ``with_plaintext`` is False."""
        if with_plaintext:
            request = GenerateDataKeyRequest.GenerateDataKeyRequest()
            action = "GenerateDataKey"
        else:
            request = GenerateDataKeyWithoutPlaintextRequest.GenerateDataKeyWithoutPlaintextRequest()
            action = "GenerateDataKeyWithoutPlaintext"
        request.set_KeyId(key_id)
        if key_spec is not None:
            request.set_KeySpec(key_spec)
        if number_of_bytes is not None:
            request.set_NumberOfBytes(number_of_bytes)
        if encryption_context:
            request.set_EncryptionContext(json.dumps(encryption_context, separators=(",", ":"), sort_keys=True))
        body = self._call(action, request)
        plaintext = body.get("Plaintext")
        return DataKeyResult(
            key_id=body.get("KeyId", ""),
            key_version_id=body.get("KeyVersionId", ""),
            ciphertext_blob=body.get("CiphertextBlob", ""),
            plaintext=Secret(plaintext, f"data key of {body.get('KeyId', key_id)}") if plaintext else None,
            request_id=body.get("RequestId", ""),
        )

    def generate_data_key_without_plaintext(self, key_id: str, **options: Any) -> DataKeyResult:
        return self.generate_data_key(key_id, with_plaintext=False, **options)

    # -- lifecycle -------------------------------------------------------------------------

    def _key_action(self, action: str, request: RpcRequest, key_id: str) -> str:
        request.set_KeyId(key_id)
        return self._call(action, request).get("RequestId", "")

    def enable_key(self, key_id: str) -> str:
        return self._key_action("EnableKey", EnableKeyRequest.EnableKeyRequest(), key_id)

    def disable_key(self, key_id: str) -> str:
        return self._key_action("DisableKey", DisableKeyRequest.DisableKeyRequest(), key_id)

    def cancel_key_deletion(self, key_id: str) -> str:
        return self._key_action("CancelKeyDeletion", CancelKeyDeletionRequest.CancelKeyDeletionRequest(), key_id)

    def list_key_versions(self, key_id: str, *, page_number: int = 1, page_size: int = 100) -> ListKeyVersionsResult:
        request = ListKeyVersionsRequest.ListKeyVersionsRequest()
        request.set_KeyId(key_id)
        request.set_PageNumber(page_number)
        request.set_PageSize(page_size)
        body = self._call("ListKeyVersions", request)
        versions = (body.get("KeyVersions") or {}).get("KeyVersion") or []
        return ListKeyVersionsResult(
            versions=[KeyVersion(v.get("KeyId", ""), v.get("KeyVersionId", ""), v.get("CreationDate", "")) for v in versions],
            total_count=int(body.get("TotalCount", 0)),
            page_number=int(body.get("PageNumber", page_number)),
            page_size=int(body.get("PageSize", page_size)),
            request_id=body.get("RequestId", ""),
        )

    def describe_key_version(self, key_id: str, key_version_id: str) -> KeyVersion:
        request = DescribeKeyVersionRequest.DescribeKeyVersionRequest()
        request.set_KeyId(key_id)
        request.set_KeyVersionId(key_version_id)
        version = self._call("DescribeKeyVersion", request).get("KeyVersion") or {}
        return KeyVersion(version.get("KeyId", ""), version.get("KeyVersionId", ""), version.get("CreationDate", ""))

    def describe_regions(self) -> list[str]:
        body = self._call("DescribeRegions", DescribeRegionsRequest.DescribeRegionsRequest())
        return [region.get("RegionId", "") for region in (body.get("Regions") or {}).get("Region") or []]

    # -- aliases and tags --------------------------------------------------------------------

    def create_alias(self, alias_name: str, key_id: str) -> str:
        request = CreateAliasRequest.CreateAliasRequest()
        request.set_AliasName(alias_name)
        request.set_KeyId(key_id)
        return self._call("CreateAlias", request).get("RequestId", "")

    def update_alias(self, alias_name: str, key_id: str) -> str:
        request = UpdateAliasRequest.UpdateAliasRequest()
        request.set_AliasName(alias_name)
        request.set_KeyId(key_id)
        return self._call("UpdateAlias", request).get("RequestId", "")

    def delete_alias(self, alias_name: str) -> str:
        request = DeleteAliasRequest.DeleteAliasRequest()
        request.set_AliasName(alias_name)
        return self._call("DeleteAlias", request).get("RequestId", "")

    def list_aliases(self, *, key_id: str | None = None, page_number: int = 1, page_size: int = 100) -> ListAliasesResult:
        """Send ListAliases, or ListAliasesByKeyId when ``key_id`` is given."""
        if key_id is None:
            request: RpcRequest = ListAliasesRequest.ListAliasesRequest()
            action = "ListAliases"
        else:
            request = ListAliasesByKeyIdRequest.ListAliasesByKeyIdRequest()
            request.set_KeyId(key_id)
            action = "ListAliasesByKeyId"
        request.set_PageNumber(page_number)
        request.set_PageSize(page_size)
        body = self._call(action, request)
        aliases = (body.get("Aliases") or {}).get("Alias") or []
        return ListAliasesResult(
            aliases=[Alias(a.get("AliasName", ""), a.get("AliasArn", ""), a.get("KeyId", "")) for a in aliases],
            total_count=int(body.get("TotalCount", 0)),
            page_number=int(body.get("PageNumber", page_number)),
            page_size=int(body.get("PageSize", page_size)),
            request_id=body.get("RequestId", ""),
        )

    def tag_resource(self, key_id: str, tags: dict[str, str]) -> str:
        request = TagResourceRequest.TagResourceRequest()
        request.set_KeyId(key_id)
        request.set_Tags(json.dumps([{"TagKey": k, "TagValue": v} for k, v in tags.items()], separators=(",", ":")))
        return self._call("TagResource", request).get("RequestId", "")

    def untag_resource(self, key_id: str, tag_keys: list[str]) -> str:
        request = UntagResourceRequest.UntagResourceRequest()
        request.set_KeyId(key_id)
        request.set_TagKeys(json.dumps(tag_keys, separators=(",", ":")))
        return self._call("UntagResource", request).get("RequestId", "")

    def list_resource_tags(self, key_id: str) -> dict[str, str]:
        request = ListResourceTagsRequest.ListResourceTagsRequest()
        request.set_KeyId(key_id)
        tags = (self._call("ListResourceTags", request).get("Tags") or {}).get("Tag") or []
        return {tag.get("TagKey", ""): tag.get("TagValue", "") for tag in tags}

    # -- the service's clock ------------------------------------------------------------------

    def server_now(self) -> datetime:
        """Return the service's current time, from the Date header of the last response.

        Import tokens and material expiry follow the service's clock, which may differ
        from this machine's (and, on the byok emulator, can be moved forward). Before any
        response has arrived this returns the local UTC time.
        """
        if self.last_server_time is None:
            return datetime.now(UTC)
        elapsed = time.monotonic() - self._server_time_received
        return self.last_server_time + timedelta(seconds=elapsed)

    def _note_server_time(self) -> str | None:
        date = getattr(self._client, "last_response_headers", {}).get("date")
        if not date:
            return None
        try:
            parsed = parsedate_to_datetime(date)
        except (TypeError, ValueError):
            logger.debug("ignoring a Date header that is not an HTTP date: %r", date[:64])
            return None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        self.last_server_time = parsed.astimezone(UTC)
        self._server_time_received = time.monotonic()
        return self.last_server_time.strftime("%Y-%m-%dT%H:%M:%SZ")

    # -- transport ------------------------------------------------------------------------

    def _call(self, action: str, request: RpcRequest) -> dict[str, Any]:
        request.set_protocol_type(self.endpoint.protocol)
        request.set_endpoint(self.endpoint.host)
        request.set_accept_format("JSON")
        self._client.last_response_headers = {}
        started = time.perf_counter()
        try:
            raw = self._client.do_action_with_exception(request)
        except ServerException as error:
            elapsed = (time.perf_counter() - started) * 1000
            self.calls.append(
                CallRecord(
                    action,
                    error.get_request_id(),
                    error.get_http_status(),
                    error.get_error_code(),
                    elapsed,
                    self._note_server_time(),
                )
            )
            logger.info(
                "%s rejected: %s (HTTP %s, RequestId %s)",
                action,
                error.get_error_code(),
                error.get_http_status(),
                error.get_request_id(),
            )
            raise KmsError(
                error.get_error_code(),
                redact_service_message(error.get_error_msg() or ""),
                http_status=error.get_http_status(),
                request_id=error.get_request_id(),
                action=action,
            ) from None
        except ClientException as error:
            elapsed = (time.perf_counter() - started) * 1000
            self.calls.append(CallRecord(action, None, None, error.get_error_code(), elapsed))
            raise KmsTransportError(
                f"{action} did not reach {self.endpoint.host}:{self.endpoint.port}: "
                f"{error.get_error_code()}: {redact_service_message(error.get_error_msg() or '')}",
                fix="check that the endpoint is reachable (for the emulator, that 'byok emulator serve' is running)",
            ) from None
        elapsed = (time.perf_counter() - started) * 1000
        try:
            body = json.loads(raw)
        except ValueError:
            raise KmsTransportError(f"{action} returned a body that is not JSON ({len(raw)} bytes)") from None
        self.calls.append(CallRecord(action, body.get("RequestId"), 200, None, elapsed, self._note_server_time()))
        logger.debug("%s succeeded (RequestId %s, %.1f ms)", action, body.get("RequestId"), elapsed)
        return body


def redact_service_message(message: str) -> str:
    """Drop the echoed string to sign from a SignatureDoesNotMatch message.

    That string contains every request parameter, including the import token and the
    wrapped key material, so it must not reach a log, an exception or a report.
    """
    marker = message.find(_STRING_TO_SIGN_MARKER)
    if marker == -1:
        return message
    return message[: marker + len(_STRING_TO_SIGN_MARKER)] + " [removed by byok]"
