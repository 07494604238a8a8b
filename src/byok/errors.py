"""Exception types shared by every part of byok.

Each error carries a one-line summary (``str(error)``) and a ``diagnostics()`` text that
names the value, the cause and the fix. Messages never contain a secret: PINs, AccessKey
secrets, import tokens and key bytes are referred to by name only.
"""

from __future__ import annotations


class ByokError(Exception):
    """Base class of every error byok raises on purpose."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def diagnostics(self) -> str:
        """Return the message followed by the suggested fix, for the console."""
        if self.fix:
            return f"{self.message}\nFix: {self.fix}"
        return self.message


class ConfigError(ByokError):
    """A profile, command-line value or environment variable is missing or invalid."""


class SecretNotFound(ConfigError):
    """A secret (PIN, AccessKey secret) is in neither its environment variable nor its file."""


class KeyFormatError(ByokError, ValueError):
    """A wrapping public key, import token, key material or blob has an unexpected form."""


class KeyMaterialLengthError(KeyFormatError):
    """Key material does not have the length its KMS key spec requires."""

    def __init__(self, key_spec: str, expected_bytes: int, actual_bytes: int, *, source: str) -> None:
        message = (
            f"{source} is {actual_bytes} bytes ({actual_bytes * 8} bits), but {key_spec} "
            f"needs exactly {expected_bytes} bytes ({expected_bytes * 8} bits)"
        )
        fix = (
            f"generate the key with a length of {expected_bytes} bytes "
            f"(CKA_VALUE_LEN={expected_bytes}); a key size of {expected_bytes * 8} is in bits"
        )
        super().__init__(message, fix=fix)
        self.key_spec = key_spec
        self.expected_bytes = expected_bytes
        self.actual_bytes = actual_bytes


class HsmError(ByokError):
    """A PKCS#11 call failed. ``ckr`` keeps the raw return value for the report."""

    def __init__(
        self,
        message: str,
        *,
        ckr: int | None = None,
        ckr_name: str | None = None,
        operation: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message, fix=fix)
        self.ckr = ckr
        self.ckr_name = ckr_name
        self.operation = operation


class KmsError(ByokError):
    """A KMS or RAM call returned an error response.

    ``code``, ``message``, ``http_status`` and ``request_id`` are copied from the
    service's error body, so a report can quote them exactly.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None,
        request_id: str | None,
        action: str,
    ) -> None:
        summary = f"{action} failed: {code} (HTTP {http_status}): {message}"
        if request_id:
            summary += f" [RequestId {request_id}]"
        super().__init__(summary)
        self.code = code
        self.service_message = message
        self.http_status = http_status
        self.request_id = request_id
        self.action = action


class KmsTransportError(ByokError):
    """The KMS endpoint could not be reached or returned something that is not an API response."""


class BlockedByEnvironment(ByokError):
    """A check cannot run here, for a reason outside the component under test.

    Example: SoftHSM2 2.6.1 cannot wrap with OAEP SHA-256, so a run that asks for
    RSAES_OAEP_SHA_256 on that token is blocked, not failed.
    """


class InconsistentKeyState(ByokError):
    """Observations of one KMS key disagree, for example the import succeeded but DescribeKey is not Enabled."""
