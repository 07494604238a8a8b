"""Hand-built signed requests, signed with the Tea SDK's own signing functions.

Tests use these where an SDK offers no way to send the request in question: an old
timestamp, a repeated nonce, a GET, form-body parameters or an unknown action.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import time
import uuid
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

from alibabacloud_tea_openapi.utils import Utils as TeaUtils

from byok.emulator.process import EmulatorProcess


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def utc_timestamp(unix_seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if unix_seconds is None else unix_seconds))


def v1_params(
    emulator: EmulatorProcess,
    action: str,
    params: dict[str, str] | None = None,
    *,
    method: str = "POST",
    timestamp: str | None = None,
    nonce: str | None = None,
    secret: str | None = None,
    version: str = "2016-01-20",
) -> dict[str, str]:
    """Return every v1 request parameter, Signature included."""
    signed = {
        "Action": action,
        "Version": version,
        "Format": "JSON",
        "AccessKeyId": emulator.access_key_id,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "SignatureNonce": nonce or uuid.uuid4().hex,
        "Timestamp": timestamp or utc_timestamp(),
        **(params or {}),
    }
    key = secret if secret is not None else emulator.access_key_secret().reveal()
    signed["Signature"] = TeaUtils.get_rpcsignature(signed, method, key)
    return signed


def encode_query(params: dict[str, str]) -> str:
    return urlencode(params, quote_via=quote, safe="~")


def send(
    emulator: EmulatorProcess,
    method: str,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    path: str = "/",
) -> RawResponse:
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=30)
    try:
        target = f"{path}?{query}" if query else path
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
        return RawResponse(response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(payload))
    finally:
        connection.close()


def acs3_headers(
    emulator: EmulatorProcess,
    action: str,
    query: dict[str, str],
    *,
    body: bytes = b"",
    timestamp: str | None = None,
    nonce: str | None = None,
    content_type: str | None = None,
) -> dict[str, str]:
    """Return ACS3-HMAC-SHA256 headers for a POST, signed by the Tea SDK's get_authorization."""
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = {
        "host": f"127.0.0.1:{emulator.port}",
        "x-acs-action": action,
        "x-acs-version": "2016-01-20",
        "x-acs-date": timestamp or utc_timestamp(),
        "x-acs-signature-nonce": nonce or uuid.uuid4().hex,
        "x-acs-content-sha256": payload_hash,
        "accept": "application/json",
    }
    if content_type:
        headers["content-type"] = content_type
    request = SimpleNamespace(pathname="/", method="POST", query=query, headers=headers)
    headers["Authorization"] = TeaUtils.get_authorization(
        request, "ACS3-HMAC-SHA256", payload_hash, emulator.access_key_id, emulator.access_key_secret().reveal()
    )
    return headers
