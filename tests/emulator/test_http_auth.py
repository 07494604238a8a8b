"""Hand-built requests: transport rules, replay and timestamp checks, error envelope."""

from __future__ import annotations

import time
import uuid
from urllib.parse import quote, urlencode

import pytest

from byok.emulator.process import EmulatorProcess
from tests.emulator.raw import acs3_headers, encode_query, send, utc_timestamp, v1_params

ERROR_FIELDS = {"RequestId", "HostId", "Code", "Message", "Recommend"}


def test_success_envelope(shared_emulator: EmulatorProcess) -> None:
    response = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "ListKeys")))
    assert response.status == 200
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    assert response.headers["x-acs-request-id"] == response.body["RequestId"]
    assert "Keys" in response.body


def test_error_envelope(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "DescribeKey", {"KeyId": str(uuid.uuid4())})
    response = send(shared_emulator, "POST", encode_query(params))
    assert response.status == 404
    assert set(response.body) == ERROR_FIELDS
    assert response.body["Code"] == "Forbidden.KeyNotFound"
    assert response.body["HostId"] == "kms.cn-hangzhou.aliyuncs.com"
    assert response.headers["x-acs-request-id"] == response.body["RequestId"]
    assert response.body["Recommend"].endswith(f"requestId={response.body['RequestId']}")


def test_get_request_accepted(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "ListKeys", method="GET")
    response = send(shared_emulator, "GET", encode_query(params))
    assert response.status == 200, response.body


def test_get_signature_rejected_on_post(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "ListKeys", method="GET")
    response = send(shared_emulator, "POST", encode_query(params))
    assert response.status == 400
    assert response.body["Code"] == "SignatureDoesNotMatch"
    string_to_sign = response.body["Message"].split("server string to sign is:", 1)[1]
    assert string_to_sign.startswith("POST&%2F&")


def test_form_body_parameters(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "CreateKey", {"Description": "from a form body"})
    body = urlencode(params).encode("ascii")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = send(shared_emulator, "POST", body=body, headers=headers)
    assert response.status == 200, response.body
    assert response.body["KeyMetadata"]["Description"] == "from a form body"


def test_long_query_string(shared_emulator: EmulatorProcess) -> None:
    created = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "CreateKey")))
    key_id = created.body["KeyMetadata"]["KeyId"]
    plaintext = "密" * 2048  # 6144 UTF-8 bytes, 18 KB once percent-encoded
    context = '{"padding":"' + "x y" * 2600 + '"}'
    params = v1_params(shared_emulator, "Encrypt", {"KeyId": key_id, "Plaintext": plaintext, "EncryptionContext": context})
    query = encode_query(params)
    assert len(query) > 30_000
    encrypted = send(shared_emulator, "POST", query)
    assert encrypted.status == 200, encrypted.body
    decrypt_params = {"CiphertextBlob": encrypted.body["CiphertextBlob"], "EncryptionContext": context}
    decrypted = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "Decrypt", decrypt_params)))
    assert decrypted.status == 200, decrypted.body
    assert decrypted.body["Plaintext"] == plaintext


def test_v1_nonce_replay(shared_emulator: EmulatorProcess) -> None:
    query = encode_query(v1_params(shared_emulator, "ListKeys"))
    assert send(shared_emulator, "POST", query).status == 200
    replay = send(shared_emulator, "POST", query)
    assert replay.status == 400
    assert replay.body["Code"] == "SignatureNonceUsed"
    assert replay.body["Message"] == "Specified signature nonce was used already."


def test_acs3_nonce_replay(shared_emulator: EmulatorProcess) -> None:
    headers = acs3_headers(shared_emulator, "ListKeys", {})
    assert send(shared_emulator, "POST", headers=headers).status == 200
    replay = send(shared_emulator, "POST", headers=headers)
    assert replay.status == 400
    assert replay.body["Code"] == "SignatureNonceUsed"


def test_bad_signature_does_not_use_nonce(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "ListKeys")
    forged = dict(params, Signature="AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    assert send(shared_emulator, "POST", encode_query(forged)).body["Code"] == "SignatureDoesNotMatch"
    assert send(shared_emulator, "POST", encode_query(params)).status == 200


@pytest.mark.parametrize("offset_seconds", [-16 * 60, 16 * 60])
def test_v1_stale_timestamp(shared_emulator: EmulatorProcess, offset_seconds: int) -> None:
    timestamp = utc_timestamp(time.time() + offset_seconds)
    response = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "ListKeys", timestamp=timestamp)))
    assert response.status == 400
    assert response.body["Code"] == "InvalidTimeStamp.Expired"
    assert response.body["Message"] == "Specified time stamp or date value is expired."


def test_v1_timestamp_within_window(shared_emulator: EmulatorProcess) -> None:
    timestamp = utc_timestamp(time.time() - 10 * 60)
    response = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "ListKeys", timestamp=timestamp)))
    assert response.status == 200, response.body


def test_acs3_stale_timestamp(shared_emulator: EmulatorProcess) -> None:
    headers = acs3_headers(shared_emulator, "ListKeys", {}, timestamp=utc_timestamp(time.time() - 3600))
    response = send(shared_emulator, "POST", headers=headers)
    assert response.status == 400
    assert response.body["Code"] == "InvalidTimeStamp.Expired"


def test_missing_timestamp(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "ListKeys")
    del params["Timestamp"]
    response = send(shared_emulator, "POST", encode_query(params))
    assert response.body["Code"] == "IllegalTimestamp"
    assert response.status == 400


def test_malformed_timestamp(shared_emulator: EmulatorProcess) -> None:
    params = v1_params(shared_emulator, "ListKeys", timestamp="2024-01-01 00:00:00")
    response = send(shared_emulator, "POST", encode_query(params))
    assert response.body["Code"] == "InvalidTimeStamp.Format"


@pytest.mark.parametrize("name", ["AccessKeyId", "Signature", "SignatureNonce", "Action", "Version"])
def test_missing_common_parameter(shared_emulator: EmulatorProcess, name: str) -> None:
    params = v1_params(shared_emulator, "ListKeys")
    del params[name]
    response = send(shared_emulator, "POST", encode_query(params))
    assert response.status == 400
    assert response.body["Code"] == "MissingParameter"
    assert f'"{name}"' in response.body["Message"]


def test_acs3_body_tampered(shared_emulator: EmulatorProcess) -> None:
    body = b"Description=original"
    headers = acs3_headers(
        shared_emulator, "CreateKey", {}, body=body, content_type="application/x-www-form-urlencoded"
    )
    response = send(shared_emulator, "POST", body=b"Description=tampered", headers=headers)
    assert response.status == 400
    assert response.body["Code"] == "SignatureDoesNotMatch"


def test_acs3_form_body(shared_emulator: EmulatorProcess) -> None:
    body = b"Description=acs3%20form"
    headers = acs3_headers(
        shared_emulator, "CreateKey", {}, body=body, content_type="application/x-www-form-urlencoded"
    )
    response = send(shared_emulator, "POST", body=body, headers=headers)
    assert response.status == 200, response.body
    assert response.body["KeyMetadata"]["Description"] == "acs3 form"


def test_acs3_query_parameters(shared_emulator: EmulatorProcess) -> None:
    query = {"Description": "space and + plus", "Origin": "EXTERNAL"}
    headers = acs3_headers(shared_emulator, "CreateKey", query)
    response = send(shared_emulator, "POST", urlencode(query), headers=headers)
    assert response.status == 200, response.body
    assert response.body["KeyMetadata"]["Description"] == "space and + plus"


def test_unknown_action(shared_emulator: EmulatorProcess) -> None:
    response = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "LaunchRocket")))
    assert response.body["Code"] == "InvalidAction.NotFound"
    assert response.status == 404


def test_wrong_version(shared_emulator: EmulatorProcess) -> None:
    response = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "ListKeys", version="2020-01-01")))
    assert response.body["Code"] == "InvalidVersion"


def test_unsupported_method(shared_emulator: EmulatorProcess) -> None:
    response = send(shared_emulator, "PUT", encode_query(v1_params(shared_emulator, "ListKeys")))
    assert response.status == 403
    assert response.body["Code"] == "UnsupportedHTTPMethod"


def test_boolean_parameters_case_insensitive(shared_emulator: EmulatorProcess) -> None:
    created = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "CreateKey")))
    key_id = created.body["KeyMetadata"]["KeyId"]
    for value in ("TRUE", "true", "True"):
        params = v1_params(shared_emulator, "Encrypt", {"KeyId": key_id, "Plaintext": "x", "DryRun": value})
        response = send(shared_emulator, "POST", encode_query(params))
        assert response.body["Code"] == "DryRunOperationError", value
    params = v1_params(shared_emulator, "Encrypt", {"KeyId": key_id, "Plaintext": "x", "DryRun": "FALSE"})
    assert send(shared_emulator, "POST", encode_query(params)).status == 200
    params = v1_params(shared_emulator, "Encrypt", {"KeyId": key_id, "Plaintext": "x", "DryRun": "yes"})
    assert send(shared_emulator, "POST", encode_query(params)).body["Code"] == "InvalidParameter"


def test_query_encoding_with_quote(shared_emulator: EmulatorProcess) -> None:
    # Old SDK style: %20 for a space, %2A for "*".
    params = v1_params(shared_emulator, "CreateKey", {"Description": "a b*c~d"})
    query = urlencode(params, quote_via=quote, safe="~")
    response = send(shared_emulator, "POST", query)
    assert response.status == 200, response.body
    assert response.body["KeyMetadata"]["Description"] == "a b*c~d"
