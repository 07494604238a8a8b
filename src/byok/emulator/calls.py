"""The call context and parameter parsing shared by every KMS action handler."""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from byok.emulator import crypto, errors
from byok.emulator.errors import ApiError
from byok.emulator.policy import Permissions

MAX_PAGE_SIZE = 100


@dataclass
class CallContext:
    """The authenticated caller: its account, the region served, the action and its RAM permissions.

    ``permissions`` is None for the account's root AccessKey, which may do everything.
    Every handler calls ``authorize`` with the ARNs it acts on before it changes or
    reveals anything. The server fails a request whose handler returned without doing so.
    """

    account_id: str
    region: str
    request_id: str
    action: str = ""
    permissions: Permissions | None = None
    # RAM action prefix of the API served: "kms" or "ram".
    service: str = "kms"
    authorized: bool = field(default=False, init=False)

    def authorize(self, *resource_arns: str) -> None:
        if self.permissions is not None:
            for arn in resource_arns:
                if not self.permissions.allows(f"{self.service}:{self.action}", arn):
                    raise errors.no_permission(arn)
        self.authorized = True

    def container_arn(self, kind: str) -> str:
        """Return the ARN of the key or alias container, the resource of CreateKey, ListKeys and ListAliases."""
        return f"acs:kms:{self.region}:{self.account_id}:{kind}"


Handler = Callable[[CallContext, Mapping[str, str]], dict]


def format_time(unix_seconds: float) -> str:
    """Format Unix seconds as the UTC ``YYYY-MM-DDThh:mm:ssZ`` KMS uses in responses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_seconds))


# Parameter parsing.

def required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise errors.missing_parameter(name)
    return value


def choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = params.get(name) or default
    if value not in allowed:
        raise errors.invalid_parameter(name)
    return value


def boolean(params: Mapping[str, str], name: str) -> bool:
    # Both Python SDKs send "True"/"False"; the API documents "true"/"false".
    value = params.get(name)
    if value is None or value == "":
        return False
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise errors.invalid_parameter(name)


def integer(params: Mapping[str, str], name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise errors.invalid_parameter(name) from None
    if number < minimum or (maximum is not None and number > maximum):
        raise errors.invalid_parameter(name)
    return number


def base64_value(value: str, name: str, error: Callable[[], ApiError] | None = None) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise (error() if error else errors.invalid_parameter(name)) from None


def encryption_context(params: Mapping[str, str]) -> bytes | None:
    try:
        return crypto.canonical_encryption_context(params.get("EncryptionContext"))
    except ValueError:
        # json.JSONDecodeError is a ValueError too.
        raise errors.invalid_parameter("EncryptionContext") from None



def page(params: Mapping[str, str]) -> tuple[int, int]:
    """Parse PageNumber (at least 1, default 1) and PageSize (1 to 100, default 10)."""
    return integer(params, "PageNumber", 1, 1), integer(params, "PageSize", 10, 1, MAX_PAGE_SIZE)
