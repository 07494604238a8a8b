"""Known-answer vectors and pure parts of request authentication."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, quote

import pytest
from alibabacloud_tea_openapi.utils import Utils as TeaUtils

from byok.emulator import auth
from byok.emulator.errors import ApiError

# Inputs of the v1 vector: the example request of the KMS "Signature" API page.
V1_VECTOR_PARAMS = {
    "Action": "CreateKey",
    "SignatureVersion": "1.0",
    "Format": "json",
    "Version": "2016-01-20",
    "AccessKeyId": "testid",
    "SignatureMethod": "HMAC-SHA1",
    "Timestamp": "2016-03-28T03:13:08Z",
}


def test_v1_get_vector() -> None:
    string_to_sign = auth.v1_string_to_sign("GET", V1_VECTOR_PARAMS)
    assert auth.v1_signature("testsecret", string_to_sign) == "41wk2SSX1GJh7fwnc5eqOfiJPFg="


def test_v1_post_vector() -> None:
    string_to_sign = auth.v1_string_to_sign("POST", V1_VECTOR_PARAMS)
    assert auth.v1_signature("testsecret", string_to_sign) == "Fi0klWyYLE4Wy22gxatiAP51JFE="


def test_v1_string_to_sign_encodes_twice() -> None:
    string_to_sign = auth.v1_string_to_sign("GET", {"A": "x/y", "B": "1"})
    assert string_to_sign == "GET&%2F&A%3Dx%252Fy%26B%3D1"


def test_v1_ignores_signature_parameter() -> None:
    with_signature = dict(V1_VECTOR_PARAMS, Signature="anything")
    assert auth.v1_string_to_sign("GET", with_signature) == auth.v1_string_to_sign("GET", V1_VECTOR_PARAMS)


@pytest.mark.parametrize(
    "value",
    ["hello world", "a*b~c", "plus+sign", "中文 ünïcode", "{\"k\": \"v\"}", "=&%/"],
)
def test_v1_matches_tea_sdk_signer(value: str) -> None:
    params = dict(V1_VECTOR_PARAMS, Plaintext=value)
    ours = auth.v1_signature("s3cr3t", auth.v1_string_to_sign("POST", params))
    assert ours == TeaUtils.get_rpcsignature(params, "POST", "s3cr3t")


def test_acs3_vector() -> None:
    empty_hash = hashlib.sha256(b"").hexdigest()
    headers = {
        "accept": "application/json",
        "host": "kms.cn-hangzhou.aliyuncs.com",
        "x-acs-action": "Encrypt",
        "x-acs-version": "2016-01-20",
        "x-acs-date": "2024-01-01T00:00:00Z",
        "x-acs-signature-nonce": "0123456789abcdef0123456789abcdef",
        "x-acs-content-sha256": empty_hash,
    }
    canonical_request = auth.acs3_canonical_request(
        "POST", "/", {"KeyId": "alias/byok-test", "Plaintext": "hello world"}, headers, sorted(headers), empty_hash
    )
    signature = auth.acs3_signature("testsecret", auth.acs3_string_to_sign(canonical_request))
    assert signature == "53cd360e75eecd9c9281dbf9aa814db51f7c7f93b63ed3652beb20a9e819d042"


def test_acs3_canonical_headers_end_with_newline() -> None:
    canonical_request = auth.acs3_canonical_request("POST", "/", {}, {"host": "h"}, ["host"], "abc")
    assert canonical_request == "POST\n/\n\nhost:h\n\nhost\nabc"


def test_percent_encode_unreserved_only() -> None:
    assert auth.percent_encode("A-z_0.9~") == "A-z_0.9~"
    assert auth.percent_encode(" */+") == "%20%2A%2F%2B"
    assert auth.percent_encode("é") == "%C3%A9"


def test_parse_timestamp_valid() -> None:
    assert auth.parse_timestamp("2016-03-28T03:13:08Z") == 1459134788


@pytest.mark.parametrize(
    "text",
    ["2016-03-28 03:13:08Z", "2016-03-28T03:13:08", "2016-13-28T03:13:08Z", "yyyy-03-28T03:13:08Z", ""],
)
def test_parse_timestamp_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError):
        auth.parse_timestamp(text)


def test_nonce_cache_rejects_repeat() -> None:
    cache = auth.NonceCache(retention_seconds=900, max_entries=10)
    assert cache.check_and_add("AK", "n1", now=1000.0)
    assert not cache.check_and_add("AK", "n1", now=1001.0)


def test_nonce_cache_scopes_by_access_key() -> None:
    cache = auth.NonceCache(retention_seconds=900, max_entries=10)
    assert cache.check_and_add("AK1", "n1", now=1000.0)
    assert cache.check_and_add("AK2", "n1", now=1000.0)


def test_nonce_cache_forgets_after_retention() -> None:
    cache = auth.NonceCache(retention_seconds=900, max_entries=10)
    assert cache.check_and_add("AK", "n1", now=1000.0)
    assert not cache.check_and_add("AK", "n1", now=1899.0)
    assert cache.check_and_add("AK", "n1", now=1900.0)


def test_nonce_cache_is_bounded() -> None:
    cache = auth.NonceCache(retention_seconds=900, max_entries=3)
    for index in range(5):
        assert cache.check_and_add("AK", f"n{index}", now=1000.0)
    assert len(cache) == 3
    # The two oldest were dropped to make room, the newest are still remembered.
    assert cache.check_and_add("AK", "n0", now=1000.0)
    assert not cache.check_and_add("AK", "n4", now=1000.0)


@pytest.mark.parametrize(
    "text",
    [
        "a=1&b=2",
        "a=1&&b=2&",
        "flag&a=",
        "a=1&a=2",
        "a+b=c+d",
        "name=%41%2b%2B%20+x",
        "k=%zz&v=%4",
        "%C3%A9=%E4%B8%AD",
        "x==y&=z",
        "caf\u00e9=\u00e9",
    ],
)
def test_decode_form_matches_parse_qsl(text: str) -> None:
    expected = dict(parse_qsl(text, keep_blank_values=True, errors="strict"))
    assert auth._decode_form(text, "query string") == expected


def test_decode_form_rejects_invalid_utf8() -> None:
    with pytest.raises(ApiError, match="ParseRequestParameterException"):
        auth._decode_form("a=%FF", "query string")


def test_decode_form_rejects_too_many_fields() -> None:
    with pytest.raises(ApiError, match="ParseRequestParameterException"):
        auth._decode_form("&".join(["a=1"] * (auth.MAX_PARAMETERS + 1)), "query string")


@pytest.mark.parametrize(
    "params",
    [
        {"Action": "Encrypt", "Plaintext": "a b*c/d+e=f&g~h", "Timestamp": "2016-03-28T03:13:08Z"},
        {"a": "1", "a-b": "2", "a_b": "3", "é": "ü%"},
    ],
)
def test_v1_string_to_sign_matches_quote(params: dict[str, str]) -> None:
    # The reference form: every name and value quoted, sorted as pairs, the query quoted again.
    pairs = sorted((quote(name, safe="~"), quote(value, safe="~")) for name, value in params.items())
    canonical = "&".join(f"{name}={value}" for name, value in pairs)
    expected = "POST&%2F&" + quote(canonical, safe="~")
    assert auth.v1_string_to_sign("POST", {**params, "Signature": "ignored"}) == expected
