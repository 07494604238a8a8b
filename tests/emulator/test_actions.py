"""Every served action through the three SDK signing modes, and the errors they surface."""

from __future__ import annotations

import base64
import re

import pytest

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import KmsCallFailed, make_client

UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
KEY_METADATA_FIELDS = {
    "Arn", "AutomaticRotation", "CreationDate", "Creator", "DKMSInstanceId", "DeleteDate", "Description",
    "KeyId", "KeySpec", "KeyState", "KeyUsage", "LastRotationDate", "MaterialExpireTime", "NextRotationDate",
    "Origin", "PrimaryKeyVersion", "ProtectionLevel", "RotationInterval",
}


def expect_failure(client, action: str, params: dict | None = None) -> KmsCallFailed:
    with pytest.raises(KmsCallFailed) as caught:
        client.call(action, params)
    return caught.value


def test_create_key_defaults(client, shared_emulator: EmulatorProcess) -> None:
    body = client.call("CreateKey", {"Description": "byok test"})
    metadata = body["KeyMetadata"]
    assert set(metadata) == KEY_METADATA_FIELDS
    assert UUID_PATTERN.match(metadata["KeyId"])
    assert UUID_PATTERN.match(metadata["PrimaryKeyVersion"])
    assert metadata["Arn"] == f"acs:kms:{shared_emulator.region}:{shared_emulator.account_id}:key/{metadata['KeyId']}"
    assert metadata["KeyState"] == "Enabled"
    assert metadata["Origin"] == "Aliyun_KMS"
    assert metadata["KeySpec"] == "Aliyun_AES_256"
    assert metadata["KeyUsage"] == "ENCRYPT/DECRYPT"
    assert metadata["ProtectionLevel"] == "SOFTWARE"
    assert metadata["Creator"] == shared_emulator.account_id
    assert metadata["Description"] == "byok test"
    assert metadata["MaterialExpireTime"] == ""
    assert metadata["DeleteDate"] == ""
    assert TIME_PATTERN.match(metadata["CreationDate"])
    assert body["RequestId"]


def test_create_external_key_pending_import(client) -> None:
    metadata = client.call("CreateKey", {"Origin": "EXTERNAL", "ProtectionLevel": "HSM"})["KeyMetadata"]
    assert metadata["KeyState"] == "PendingImport"
    assert metadata["Origin"] == "EXTERNAL"
    assert metadata["ProtectionLevel"] == "HSM"


def test_describe_key_by_id_and_arn(client) -> None:
    created = client.call("CreateKey")["KeyMetadata"]
    by_id = client.call("DescribeKey", {"KeyId": created["KeyId"]})["KeyMetadata"]
    by_arn = client.call("DescribeKey", {"KeyId": created["Arn"]})["KeyMetadata"]
    assert by_id == by_arn
    assert by_id["KeyId"] == created["KeyId"]
    assert by_id["DeletionProtection"] == "Disabled"
    assert by_id["DeletionProtectionDescription"] == ""
    assert set(by_id) == KEY_METADATA_FIELDS | {"DeletionProtection", "DeletionProtectionDescription"}


def test_list_keys_pages(client) -> None:
    created = [client.call("CreateKey")["KeyMetadata"]["KeyId"] for _ in range(3)]
    first = client.call("ListKeys", {"PageSize": 100})
    total = first["TotalCount"]
    assert total >= 3
    listed = [entry["KeyId"] for entry in first["Keys"]["Key"]]
    assert set(created) <= set(listed)
    assert first["PageNumber"] == 1
    assert first["PageSize"] == 100
    for entry in first["Keys"]["Key"]:
        assert entry["KeyArn"].endswith(f":key/{entry['KeyId']}")

    last_page = client.call("ListKeys", {"PageSize": 1, "PageNumber": total})
    assert [entry["KeyId"] for entry in last_page["Keys"]["Key"]] == [listed[-1]]
    beyond = client.call("ListKeys", {"PageSize": 1, "PageNumber": total + 1})
    assert beyond["Keys"]["Key"] == []
    assert beyond["TotalCount"] == total


def test_list_keys_filter_by_state(client) -> None:
    pending = client.call("CreateKey", {"Origin": "EXTERNAL"})["KeyMetadata"]["KeyId"]
    enabled = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    body = client.call("ListKeys", {"PageSize": 100, "Filters": '[{"Key":"KeyState","Values":["PendingImport"]}]'})
    listed = {entry["KeyId"] for entry in body["Keys"]["Key"]}
    assert pending in listed
    assert enabled not in listed


@pytest.mark.parametrize("page_size", [0, 101])
def test_list_keys_page_size_range(client, page_size: int) -> None:
    failure = expect_failure(client, "ListKeys", {"PageSize": page_size})
    assert failure.code == "InvalidParameter"
    assert failure.http_status == 400


def test_encrypt_decrypt_round_trip(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    encrypted = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "aGVsbG8gd29ybGQ="})
    assert encrypted["KeyId"] == key_id
    blob = base64.b64decode(encrypted["CiphertextBlob"])
    assert blob[:36].decode("ascii") == encrypted["KeyVersionId"]
    assert len(blob) == 36 + 12 + len("aGVsbG8gd29ybGQ=") + 16
    decrypted = client.call("Decrypt", {"CiphertextBlob": encrypted["CiphertextBlob"]})
    assert decrypted["Plaintext"] == "aGVsbG8gd29ybGQ="
    assert decrypted["KeyId"] == key_id
    assert decrypted["KeyVersionId"] == encrypted["KeyVersionId"]


def test_encrypt_with_arn_returns_key_id(client) -> None:
    metadata = client.call("CreateKey")["KeyMetadata"]
    encrypted = client.call("Encrypt", {"KeyId": metadata["Arn"], "Plaintext": "x"})
    assert encrypted["KeyId"] == metadata["KeyId"]


def test_encryption_context_must_match(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    context = {"purpose": "byok", "run": "42"}
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "secret text", "EncryptionContext": context})["CiphertextBlob"]

    reordered = {"run": "42", "purpose": "byok"}
    assert client.call("Decrypt", {"CiphertextBlob": blob, "EncryptionContext": reordered})["Plaintext"] == "secret text"

    wrong = expect_failure(client, "Decrypt", {"CiphertextBlob": blob, "EncryptionContext": {"purpose": "other", "run": "42"}})
    assert wrong.code == "InvalidParameter"
    missing = expect_failure(client, "Decrypt", {"CiphertextBlob": blob})
    assert missing.code == "InvalidParameter"


def test_encryption_context_values_must_be_strings(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    failure = expect_failure(client, "Encrypt", {"KeyId": key_id, "Plaintext": "x", "EncryptionContext": {"n": 1}})
    assert failure.code == "InvalidParameter"
    assert "EncryptionContext" in failure.message


def test_decrypt_short_blob(client) -> None:
    failure = expect_failure(client, "Decrypt", {"CiphertextBlob": base64.b64encode(b"x" * 47).decode()})
    assert failure.code == "InvalidParameter"
    assert failure.http_status == 400


def test_decrypt_tampered_blob(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    blob = bytearray(base64.b64decode(client.call("Encrypt", {"KeyId": key_id, "Plaintext": "x"})["CiphertextBlob"]))
    blob[-1] ^= 0x01
    failure = expect_failure(client, "Decrypt", {"CiphertextBlob": base64.b64encode(bytes(blob)).decode()})
    assert failure.code == "InvalidParameter"


def test_decrypt_unknown_key_version(client) -> None:
    blob = b"00000000-0000-4000-8000-000000000000" + bytes(12 + 17)
    failure = expect_failure(client, "Decrypt", {"CiphertextBlob": base64.b64encode(blob).decode()})
    assert failure.code == "Forbidden.KeyNotFound"
    assert failure.http_status == 404


def test_encrypt_pending_import_rejected(client) -> None:
    key_id = client.call("CreateKey", {"Origin": "EXTERNAL"})["KeyMetadata"]["KeyId"]
    failure = expect_failure(client, "Encrypt", {"KeyId": key_id, "Plaintext": "x"})
    assert failure.code == "Rejected.PendingImport"
    assert failure.http_status == 409
    assert failure.message == "The request was rejected because the key state is PendingImport."


def test_encrypt_plaintext_limit(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    assert client.call("Encrypt", {"KeyId": key_id, "Plaintext": "a" * 6144})["KeyId"] == key_id
    failure = expect_failure(client, "Encrypt", {"KeyId": key_id, "Plaintext": "a" * 6145})
    assert failure.code == "InvalidParameter"


def test_unknown_key_not_found(client) -> None:
    failure = expect_failure(client, "DescribeKey", {"KeyId": "00000000-0000-4000-8000-000000000000"})
    assert failure.code == "Forbidden.KeyNotFound"
    assert failure.http_status == 404
    assert failure.message == "The specified Key is not found."


def test_arn_of_other_account_not_found(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    failure = expect_failure(client, "DescribeKey", {"KeyId": f"acs:kms:cn-hangzhou:1111111111111111:key/{key_id}"})
    assert failure.code == "Forbidden.KeyNotFound"


def test_alias_not_found(client) -> None:
    failure = expect_failure(client, "DescribeKey", {"KeyId": "alias/none"})
    assert failure.code == "Forbidden.AliasNotFound"


def test_missing_key_id(client) -> None:
    failure = expect_failure(client, "Encrypt", {"Plaintext": "x"})
    assert failure.code == "MissingParameter"
    assert failure.http_status == 400
    assert failure.message == 'The parameter "KeyId" is needed but not provided.'


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"KeySpec": "RSA_2048"}, "UnsupportedOperation"),
        ({"KeySpec": "AES_999"}, "InvalidParameter"),
        ({"Origin": "external"}, "InvalidParameter"),
        ({"KeyUsage": "SIGN/VERIFY"}, "InvalidParameter"),
        ({"ProtectionLevel": "CLOUD"}, "InvalidParameter"),
        ({"Origin": "EXTERNAL", "EnableAutomaticRotation": True}, "InvalidParameter"),
    ],
)
def test_create_key_rejects(client, params: dict, code: str) -> None:
    failure = expect_failure(client, "CreateKey", params)
    assert failure.code == code
    assert failure.http_status == 400


def test_get_parameters_for_import_origin(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    params = {"KeyId": key_id, "WrappingAlgorithm": "RSAES_OAEP_SHA_256", "WrappingKeySpec": "RSA_2048"}
    failure = expect_failure(client, "GetParametersForImport", params)
    assert failure.code == "Unsupported.Origin"
    assert failure.message == "This key origin is not valid for this api"


@pytest.mark.parametrize(
    ("algorithm", "spec", "code"),
    [
        ("RSAES_OAEP_SHA_512", "RSA_2048", "InvalidParameter"),
        ("RSAES_OAEP_SHA_256", "RSA_4096", "InvalidParameter"),
        ("rsaes_oaep_sha_256", "RSA_2048", "InvalidParameter"),
    ],
)
def test_get_parameters_for_import_rejects(client, algorithm: str, spec: str, code: str) -> None:
    key_id = client.call("CreateKey", {"Origin": "EXTERNAL"})["KeyMetadata"]["KeyId"]
    params = {"KeyId": key_id, "WrappingAlgorithm": algorithm, "WrappingKeySpec": spec}
    failure = expect_failure(client, "GetParametersForImport", params)
    assert failure.code == code


def test_import_key_material_aliyun_origin(client) -> None:
    key_id = client.call("CreateKey")["KeyMetadata"]["KeyId"]
    params = {
        "KeyId": key_id,
        "EncryptedKeyMaterial": base64.b64encode(bytes(256)).decode(),
        "ImportToken": base64.b64encode(bytes(48)).decode(),
        "KeyMaterialExpireUnix": 0,
    }
    failure = expect_failure(client, "ImportKeyMaterial", params)
    assert failure.code == "Unsupported.Origin"


def test_wrong_secret_rejected(sdk_mode: str, shared_emulator: EmulatorProcess) -> None:
    client = make_client(sdk_mode, shared_emulator, secret="W" * 30)
    failure = expect_failure(client, "ListKeys")
    assert failure.http_status == 400
    if sdk_mode == "old-sdk":
        # aliyun-python-sdk-core rewrites the code when the server's string to sign equals its own.
        assert failure.code == "InvalidAccessKeySecret"
    else:
        assert failure.code == "SignatureDoesNotMatch"
        assert "server string to sign is:" in failure.message


def test_unknown_access_key_rejected(sdk_mode: str, shared_emulator: EmulatorProcess) -> None:
    client = make_client(sdk_mode, shared_emulator, access_key_id="LTAI" + "0" * 20, secret="W" * 30)
    failure = expect_failure(client, "ListKeys")
    assert failure.code == "InvalidAccessKeyId.NotFound"
    assert failure.http_status == 404
