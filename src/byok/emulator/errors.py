"""API errors of the emulator, with the codes, HTTP statuses and messages Alibaba Cloud KMS uses.

Codes and messages come from the KMS API reference (common error table of
"Calling method/Responses", the per-action error codes of the KMS 2016-01-20 OpenAPI
metadata) and from the generic Alibaba Cloud API gateway. Clients and SDKs match on
them, so they are copied exactly. A message for a limit of the emulator, which the real
service does not have, is the emulator's own text.
"""

from __future__ import annotations


class ApiError(Exception):
    """An error response: ``code`` and ``message`` go into the body, ``http_status`` on the line.

    ``log_message`` is False for errors whose message may echo request parameters that
    are secrets (the v1 string to sign contains every parameter, ImportToken included).
    """

    def __init__(self, code: str, http_status: int, message: str, *, log_message: bool = True) -> None:
        super().__init__(f"{code} (HTTP {http_status}): {message}")
        self.code = code
        self.http_status = http_status
        self.message = message
        self.log_message = log_message
        # Extra response headers, such as x-acs-retry-after on throttling.
        self.headers: list[tuple[bytes, bytes]] = []


# Authentication, signing and time. These come from the API gateway in front of KMS.

def signature_does_not_match(string_to_sign: str) -> ApiError:
    # aliyun-python-sdk-core 2.16 (client.py, _get_server_exception) compares the text
    # after the first colon with its own string to sign and, when they are equal,
    # reports InvalidAccessKeySecret. The string to sign must therefore follow "is:".
    return ApiError(
        "SignatureDoesNotMatch",
        400,
        "Specified signature is not matched with our calculation. server string to sign is:"
        + string_to_sign,
        log_message=False,
    )


def access_key_not_found() -> ApiError:
    return ApiError("InvalidAccessKeyId.NotFound", 404, "Specified access key is not found.")


def access_key_disabled() -> ApiError:
    return ApiError("Forbidden.AccessKey", 403, "This AccessKey is not enabled.")


def incomplete_signature() -> ApiError:
    return ApiError(
        "IncompleteSignature", 400, "The request signature does not conform to Alibaba Cloud standards."
    )


def signature_nonce_used() -> ApiError:
    return ApiError("SignatureNonceUsed", 400, "Specified signature nonce was used already.")


def timestamp_expired() -> ApiError:
    return ApiError("InvalidTimeStamp.Expired", 400, "Specified time stamp or date value is expired.")


def timestamp_format() -> ApiError:
    # Generic gateway code for a Timestamp or x-acs-date that does not parse.
    return ApiError(
        "InvalidTimeStamp.Format", 400, "Specified time stamp or date value is not well formatted."
    )


def timestamp_missing() -> ApiError:
    return ApiError(
        "IllegalTimestamp",
        400,
        'The input parameter "Timestamp" that is mandatory for processing this request is not supplied.',
    )


def action_not_found() -> ApiError:
    # NOTE: the gateway status for an unknown action is not documented for KMS; 404 is inferred.
    return ApiError("InvalidAction.NotFound", 404, "Specified api is not found, please check your url and method.")


def invalid_version() -> ApiError:
    # NOTE: 400 is inferred; the gateway documents the message, not the status, for KMS.
    return ApiError("InvalidVersion", 400, "Specified parameter Version is not valid.")


def unsupported_http_method() -> ApiError:
    return ApiError("UnsupportedHTTPMethod", 403, "This http method is not supported.")


# Parameters.

def missing_parameter(name: str) -> ApiError:
    return ApiError("MissingParameter", 400, f'The parameter "{name}" is needed but not provided.')


def invalid_parameter(name: str) -> ApiError:
    return ApiError("InvalidParameter", 400, f'The specified parameter "{name}" is not valid.')


def unsupported_by_emulator(what: str) -> ApiError:
    """Reject a documented feature that this emulator does not model yet."""
    return ApiError("UnsupportedOperation", 400, f"This action is not supported. {what}")


def dry_run_operation() -> ApiError:
    # The code comes from the DryRun field documentation of alibabacloud-kms20160120;
    # the status and message are inferred.
    return ApiError("DryRunOperationError", 400, "Request would have succeeded, but DryRun flag is set.")


# Keys and key state.

def key_not_found() -> ApiError:
    return ApiError("Forbidden.KeyNotFound", 404, "The specified Key is not found.")


def alias_not_found() -> ApiError:
    return ApiError("Forbidden.AliasNotFound", 404, "The specified Alias is not found.")


def key_version_not_found() -> ApiError:
    return ApiError("Forbidden.KeyVersionNotFound", 404, "The specified Key version is not found.")


def alias_already_exists() -> ApiError:
    return ApiError("AliasAlreadyExists", 400, "AliasName Already Exists.")


def unsupported_alias() -> ApiError:
    # Inferred: which actions reject an alias follows the KeyId field documentation of
    # alibabacloud-kms20160120 3.3.1 (actions that ask for "the globally unique ID").
    return ApiError("Unsupported.Alias", 400, "Alias is not valid for this api.")


def limit_exceeded() -> ApiError:
    return ApiError(
        "Rejected.LimitExceeded", 400, "The request was rejected because user create resource limit was exceeded."
    )


def rejected_state(state: str) -> ApiError:
    """Reject a cryptographic call on a key in ``state`` (Disabled, PendingDeletion, PendingImport)."""
    return ApiError(
        f"Rejected.{state}", 409, f"The request was rejected because the key state is {state}."
    )


def state_modified_failed() -> ApiError:
    return ApiError("Rejected.StateModifiedFailed", 409, "Keystate modified failed.")


# Authorization (RAM).

def no_permission(resource_arn: str) -> ApiError:
    # The real KMS message names the resource ARN (the API reference prints a shorter
    # text without it); SDK users match on the code.
    return ApiError(
        "Forbidden.NoPermission", 403, f"This operation for {resource_arn} is forbidden by permission system."
    )


# Import.

def invalid_key_material() -> ApiError:
    return ApiError("InvalidKeyMaterial", 400, "key material is invalid")


def invalid_import_token() -> ApiError:
    return ApiError("InvalidImportToken", 400, "import token is invalid")


def expired_import_token() -> ApiError:
    return ApiError("ExpiredImportToken", 400, "import token is expired")


def unsupported_origin() -> ApiError:
    return ApiError("Unsupported.Origin", 400, "This key origin is not valid for this api")


# Service.

def internal_failure() -> ApiError:
    return ApiError("InternalFailure", 500, "Internal Failure.")


def request_too_large(limit: int) -> ApiError:
    # NOTE: the shared KMS documents no body limit. KMS instances return HTTP 413 above 3 MB.
    return ApiError("RequestTooLarge", 413, f"The request body is larger than {limit} bytes.")
