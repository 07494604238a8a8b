"""Request parsing and authentication: RPC signature v1 and ACS3-HMAC-SHA256.

Algorithms as Alibaba documents them ("Signature" page of the KMS API reference for v1,
"V3 request structure and signature" of the Alibaba Cloud SDK docs for ACS3) and as
alibabacloud-tea-openapi 0.4.6 (utils.py, get_rpcsignature and get_authorization) and
aliyun-python-sdk-core 2.16.1 compute them.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import logging
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote

from byok.emulator import errors
from byok.emulator.errors import ApiError
from byok.emulator.store import AccessKey, Store

logger = logging.getLogger(__name__)

API_VERSION = "2016-01-20"
RAM_API_VERSION = "2015-05-01"
ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
DEFAULT_MAX_CLOCK_SKEW_SECONDS = 900
DEFAULT_NONCE_RETENTION_SECONDS = 900
DEFAULT_NONCE_CACHE_SIZE = 1_000_000
MAX_PARAMETERS = 1000
_MAX_CACHED_SIGNING_KEYS = 10_000
_FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers an ACS3 request must sign. NOTE: this list is inferred. alibabacloud-tea-openapi
# 0.4.6 signs every header it sets, these included.
_ACS3_REQUIRED_SIGNED_HEADERS = (
    "host",
    "x-acs-action",
    "x-acs-content-sha256",
    "x-acs-date",
    "x-acs-signature-nonce",
    "x-acs-version",
)


@dataclass(frozen=True)
class ParsedRequest:
    """One HTTP request: method, path, decoded query pairs, merged parameters, headers, body."""

    method: str
    path: str
    query: dict[str, str]
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class AuthContext:
    """The authenticated caller and the action it requests."""

    access_key: AccessKey
    action: str
    signature_scheme: str
    version: str = API_VERSION


def parse_request(method: str, path: str, raw_query: bytes, raw_headers: Iterable[tuple[bytes, bytes]], body: bytes) -> ParsedRequest:
    """Decode the query, the form body (if any) and the headers of an ASGI request.

    Header names are lowercase. Repeated headers are joined with "," in sorted order,
    the way alibabacloud-tea-openapi canonicalises them. Body parameters override query
    parameters of the same name.
    """
    headers: dict[str, str] = {}
    for name_bytes, value_bytes in raw_headers:
        name = name_bytes.decode("latin-1").lower()
        value = value_bytes.decode("latin-1").strip()
        if name in headers:
            headers[name] = ",".join(sorted((*headers[name].split(","), value)))
        else:
            headers[name] = value
    query = _decode_form(raw_query.decode("latin-1"), "query string")
    params = dict(query)
    if body and headers.get("content-type", "").lower().startswith(_FORM_CONTENT_TYPE):
        try:
            body_text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise errors.invalid_parameter("request body") from None
        params.update(_decode_form(body_text, "request body"))
    return ParsedRequest(method, path, query, params, headers, body)


def _decode_form(text: str, where: str) -> dict[str, str]:
    """Decode ``name=value&…`` as ``urllib.parse.parse_qsl(keep_blank_values=True, errors="strict")`` does.

    Written out because parse_qsl costs more than the whole signature check. Like
    parse_qsl (Python 3.11) it skips empty fields, reads a field without "=" as an empty
    value, turns "+" into a space and lets a later field win over an earlier one.
    """
    if not text:
        return {}
    if text.count("&") + 1 > MAX_PARAMETERS:
        raise _parse_error()
    params: dict[str, str] = {}
    try:
        for field in text.split("&"):
            if not field:
                continue
            name, _, value = field.partition("=")
            if "+" in name:
                name = name.replace("+", " ")
            if "%" in name:
                name = unquote(name, errors="strict")
            if "+" in value:
                value = value.replace("+", " ")
            if "%" in value:
                value = unquote(value, errors="strict")
            params[name] = value
    except UnicodeDecodeError:
        # A percent escape that is not UTF-8.
        raise _parse_error() from None
    return params


def _parse_error() -> ApiError:
    return ApiError(
        "ParseRequestParameterException",
        400,
        "Server parse parameters exception. Please check your input params.",
    )


# Pure signing functions: the known-answer tests call these.

_UNRESERVED_ONLY = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def percent_encode(text: str) -> str:
    """Percent-encode as UTF-8, leaving only A-Z a-z 0-9 - _ . ~ (RFC 3986 unreserved), uppercase hex."""
    # Most names and values need no escape at all, and the regex test is far cheaper than quote.
    if _UNRESERVED_ONLY(text):
        return text
    return quote(text, safe="~", encoding="utf-8")


def _canonical_query(params: Mapping[str, str], skip: str | None = None) -> str:
    # Sorted as (name, value) pairs, not as joined "name=value" strings, because "a-b=1"
    # sorts before "a=1" as text while the pair ("a", "1") sorts first.
    pairs = sorted((percent_encode(name), percent_encode(value)) for name, value in params.items() if name != skip)
    return "&".join([f"{name}={value}" for name, value in pairs])


def _percent_encode_canonical_query(canonical_query: str) -> str:
    # A canonical query contains only unreserved characters, "%", "=" and "&", so this
    # equals percent_encode(canonical_query) ("%" first, so that no new escape is touched).
    return canonical_query.replace("%", "%25").replace("=", "%3D").replace("&", "%26")


def v1_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """Return the RPC v1 string to sign: METHOD & %2F & percentEncode(canonical query).

    ``params`` are the decoded query and form parameters; ``Signature`` is left out.
    """
    canonical_query = _canonical_query(params, skip="Signature")
    return f"{method.upper()}&%2F&{_percent_encode_canonical_query(canonical_query)}"


def v1_signing_key(secret: str) -> bytes:
    """Return the HMAC-SHA1 key of RPC signature v1: the secret followed by "&", as UTF-8."""
    return (secret + "&").encode("utf-8")


def v1_signature(secret: str, string_to_sign: str) -> str:
    """Return base64(HMAC-SHA1(secret + "&", string to sign))."""
    return _v1_signature_with_key(v1_signing_key(secret), string_to_sign)


def _v1_signature_with_key(signing_key: bytes, string_to_sign: str) -> str:
    digest = hmac.digest(signing_key, string_to_sign.encode("utf-8"), "sha1")
    return base64.b64encode(digest).decode("ascii")


def acs3_canonical_request(
    method: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_sha256: str,
) -> str:
    """Return the ACS3 canonical request; the header block ends with a newline before the header list."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n" for name in signed_headers)
    return "\n".join(
        (
            method.upper(),
            path or "/",
            _canonical_query(query),
            canonical_headers,
            ";".join(signed_headers),
            payload_sha256,
        )
    )


def acs3_string_to_sign(canonical_request: str) -> str:
    return f"{ACS3_ALGORITHM}\n{hashlib.sha256(canonical_request.encode('utf-8')).hexdigest()}"


def acs3_signature(secret: str, string_to_sign: str) -> str:
    """Return hex(HMAC-SHA256(secret, string to sign)); unlike v1 no "&" is appended to the key."""
    return hmac.digest(secret.encode("utf-8"), string_to_sign.encode("utf-8"), "sha256").hex()


def parse_timestamp(text: str) -> int:
    """Parse a UTC ``YYYY-MM-DDThh:mm:ssZ`` timestamp into Unix seconds; raise ValueError if malformed."""
    if len(text) != 20 or text[4] != "-" or text[7] != "-" or text[10] != "T" or text[13] != ":" or text[16] != ":" or text[19] != "Z":
        raise ValueError(text)
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    if not all(field.isdigit() for field in fields):
        raise ValueError(text)
    year, month, day, hour, minute, second = (int(field) for field in fields)
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        raise ValueError(text)
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


class NonceCache:
    """Nonces seen within ``retention_seconds`` (real time), at most ``max_entries``.

    When full, the oldest nonce is dropped early and a warning is logged, so a replay of
    that one request would no longer be caught. The cache lives in process memory and is
    not shared between processes that use one data directory.
    """

    def __init__(self, retention_seconds: float = DEFAULT_NONCE_RETENTION_SECONDS, max_entries: int = DEFAULT_NONCE_CACHE_SIZE) -> None:
        self.retention_seconds = retention_seconds
        self.max_entries = max_entries
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._evicted_early = 0

    def check_and_add(self, access_key_id: str, nonce: str, now: float) -> bool:
        """Record the nonce and return True, or return False if it was seen before."""
        order = self._order
        while order and order[0][0] <= now:
            self._seen.discard(order.popleft()[1])
        entry = f"{access_key_id}\x00{nonce}"
        if entry in self._seen:
            return False
        if len(order) >= self.max_entries:
            self._seen.discard(order.popleft()[1])
            self._evicted_early += 1
            if self._evicted_early in (1, 10, 100, 1000) or self._evicted_early % 100_000 == 0:
                logger.warning(
                    "nonce cache is full (%d entries); %d nonces were dropped before their %d s retention ended",
                    self.max_entries,
                    self._evicted_early,
                    self.retention_seconds,
                )
        self._seen.add(entry)
        order.append((now + self.retention_seconds, entry))
        return True

    def __len__(self) -> int:
        return len(self._seen)


class Authenticator:
    """Check Version, Action, timestamp, signature and nonce of a request against the store."""

    def __init__(
        self,
        store: Store,
        actions: Mapping[str, Iterable[str]],
        *,
        max_clock_skew_seconds: float = DEFAULT_MAX_CLOCK_SKEW_SECONDS,
        nonce_cache: NonceCache | None = None,
    ) -> None:
        self._store = store
        # API version -> the actions served under it (KMS 2016-01-20, RAM 2015-05-01).
        self._actions = {version: frozenset(names) for version, names in actions.items()}
        self._max_clock_skew = max_clock_skew_seconds
        self._nonces = nonce_cache if nonce_cache is not None else NonceCache()
        self._timestamp_cache: tuple[str, int] = ("", 0)
        # AccessKey id -> (the AccessKey it was derived from, v1 HMAC key bytes).
        self._signing_keys: dict[str, tuple[AccessKey, bytes]] = {}

    def authenticate(self, request: ParsedRequest) -> AuthContext:
        authorization = request.headers.get("authorization", "")
        if authorization.startswith(ACS3_ALGORITHM):
            return self._authenticate_acs3(request, authorization)
        return self._authenticate_v1(request)

    def _check_action(self, action: str | None, version: str | None) -> tuple[str, str]:
        if not action:
            raise errors.missing_parameter("Action")
        if not version:
            raise errors.missing_parameter("Version")
        actions = self._actions.get(version)
        if actions is None:
            raise errors.invalid_version()
        if action not in actions:
            raise errors.action_not_found()
        return action, version

    def _check_timestamp(self, text: str | None, now: float) -> None:
        if not text:
            raise errors.timestamp_missing()
        cached_text, cached_value = self._timestamp_cache
        if text == cached_text:
            value = cached_value
        else:
            try:
                value = parse_timestamp(text)
            except ValueError:
                raise errors.timestamp_format() from None
            self._timestamp_cache = (text, value)
        # NOTE: a window of 15 minutes either side of real time is inferred; Alibaba documents
        # the 15 minutes but not whether requests from the future are allowed.
        if abs(now - value) > self._max_clock_skew:
            raise errors.timestamp_expired()

    def _lookup_access_key(self, access_key_id: str) -> AccessKey:
        access_key = self._store.get_access_key(access_key_id)
        if access_key is None:
            raise errors.access_key_not_found()
        if access_key.status != "Active":
            raise errors.access_key_disabled()
        return access_key

    def _v1_signing_key(self, access_key: AccessKey) -> bytes:
        # Keyed by the AccessKey object, which the store replaces whenever the key changes.
        cached = self._signing_keys.get(access_key.access_key_id)
        if cached is not None and cached[0] is access_key:
            return cached[1]
        signing_key = v1_signing_key(access_key.secret.reveal())
        if len(self._signing_keys) >= _MAX_CACHED_SIGNING_KEYS:
            self._signing_keys.clear()
        self._signing_keys[access_key.access_key_id] = (access_key, signing_key)
        return signing_key

    def _check_nonce(self, access_key_id: str, nonce: str, now: float) -> None:
        if not self._nonces.check_and_add(access_key_id, nonce, now):
            raise errors.signature_nonce_used()

    def _authenticate_v1(self, request: ParsedRequest) -> AuthContext:
        params = request.params
        action, version = self._check_action(params.get("Action"), params.get("Version"))
        access_key_id = params.get("AccessKeyId")
        if not access_key_id:
            raise errors.missing_parameter("AccessKeyId")
        signature = params.get("Signature")
        if not signature:
            raise errors.missing_parameter("Signature")
        if params.get("SignatureMethod") != "HMAC-SHA1" or params.get("SignatureVersion") != "1.0":
            raise errors.incomplete_signature()
        now = time.time()
        self._check_timestamp(params.get("Timestamp"), now)
        # The KMS parameter table calls SignatureNonce optional, the generic RPC docs
        # mandatory; requiring it keeps replay protection on.
        nonce = params.get("SignatureNonce")
        if not nonce:
            raise errors.missing_parameter("SignatureNonce")
        access_key = self._lookup_access_key(access_key_id)

        string_to_sign = v1_string_to_sign(request.method, params)
        expected = _v1_signature_with_key(self._v1_signing_key(access_key), string_to_sign)
        if not hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8")):
            raise errors.signature_does_not_match(string_to_sign)
        self._check_nonce(access_key_id, nonce, now)
        return AuthContext(access_key, action, "v1", version)

    def _authenticate_acs3(self, request: ParsedRequest, authorization: str) -> AuthContext:
        headers = request.headers
        action, version = self._check_action(
            headers.get("x-acs-action") or request.params.get("Action"),
            headers.get("x-acs-version") or request.params.get("Version"),
        )
        fields = _parse_acs3_authorization(authorization)
        access_key_id = fields.get("Credential")
        signed_header_list = fields.get("SignedHeaders")
        signature = fields.get("Signature")
        if not access_key_id or not signed_header_list or not signature:
            raise errors.incomplete_signature()
        signed_headers = signed_header_list.split(";")
        if any(name not in signed_headers for name in _ACS3_REQUIRED_SIGNED_HEADERS):
            raise errors.incomplete_signature()
        now = time.time()
        self._check_timestamp(headers.get("x-acs-date"), now)
        nonce = headers.get("x-acs-signature-nonce")
        if not nonce:
            raise errors.missing_parameter("x-acs-signature-nonce")
        access_key = self._lookup_access_key(access_key_id)

        payload_sha256 = hashlib.sha256(request.body).hexdigest() if request.body else EMPTY_BODY_SHA256
        canonical_request = acs3_canonical_request(
            request.method, request.path, request.query, headers, signed_headers, payload_sha256
        )
        string_to_sign = acs3_string_to_sign(canonical_request)
        expected = acs3_signature(access_key.secret.reveal(), string_to_sign)
        # The content hash header must describe the body that arrived, not just be signed.
        header_hash_matches = hmac.compare_digest(
            headers.get("x-acs-content-sha256", "").encode("latin-1"), payload_sha256.encode("ascii")
        )
        signature_matches = hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))
        if not (header_hash_matches and signature_matches):
            raise errors.signature_does_not_match(string_to_sign)
        self._check_nonce(access_key_id, nonce, now)
        return AuthContext(access_key, action, "ACS3-HMAC-SHA256", version)


def _parse_acs3_authorization(authorization: str) -> dict[str, str]:
    """Split "ACS3-HMAC-SHA256 Credential=…,SignedHeaders=…,Signature=…" into its fields."""
    _, _, rest = authorization.partition(" ")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, separator, value = part.strip().partition("=")
        if separator:
            fields[name] = value
    return fields
