"""Aliases, tags, data keys and DescribeRegions through the three SDK signing modes."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import KmsCallFailed


def expect_failure(client, action: str, params: dict) -> KmsCallFailed:
    __tracebackhide__ = True
    with pytest.raises(KmsCallFailed) as caught:
        client.call(action, params)
    return caught.value


def new_key(client) -> str:
    return client.call("CreateKey", {})["KeyMetadata"]["KeyId"]


def unique_alias() -> str:
    return f"alias/byok-{uuid.uuid4().hex[:12]}"


def test_alias_resolves_everywhere_documented(client, shared_emulator: EmulatorProcess) -> None:
    key_id = new_key(client)
    alias = unique_alias()
    assert set(client.call("CreateAlias", {"KeyId": key_id, "AliasName": alias})) == {"RequestId"}
    alias_arn = f"acs:kms:{shared_emulator.region}:{shared_emulator.account_id}:{alias}"
    for reference in (alias, alias_arn):
        assert client.call("DescribeKey", {"KeyId": reference})["KeyMetadata"]["KeyId"] == key_id
        encrypted = client.call("Encrypt", {"KeyId": reference, "Plaintext": "via alias"})
        assert encrypted["KeyId"] == key_id
        assert client.call("Decrypt", {"CiphertextBlob": encrypted["CiphertextBlob"]})["Plaintext"] == "via alias"
        assert client.call("GenerateDataKey", {"KeyId": reference})["KeyId"] == key_id


def test_alias_rejected_by_id_only_actions(client) -> None:
    key_id = new_key(client)
    alias = unique_alias()
    client.call("CreateAlias", {"KeyId": key_id, "AliasName": alias})
    for action in ("DisableKey", "EnableKey", "CancelKeyDeletion", "ListResourceTags"):
        error = expect_failure(client, action, {"KeyId": alias})
        assert (error.code, error.http_status) == ("Unsupported.Alias", 400)


def test_alias_lifecycle(client) -> None:
    first, second = new_key(client), new_key(client)
    alias = unique_alias()
    client.call("CreateAlias", {"KeyId": first, "AliasName": alias})
    error = expect_failure(client, "CreateAlias", {"KeyId": second, "AliasName": alias})
    assert (error.code, error.http_status) == ("AliasAlreadyExists", 400)

    listed = client.call("ListAliasesByKeyId", {"KeyId": first})
    assert listed["TotalCount"] == 1
    entry = listed["Aliases"]["Alias"][0]
    assert entry["AliasName"] == alias
    assert entry["KeyId"] == first
    assert entry["AliasArn"].endswith(f":{alias}")

    client.call("UpdateAlias", {"KeyId": second, "AliasName": alias})
    assert client.call("DescribeKey", {"KeyId": alias})["KeyMetadata"]["KeyId"] == second
    assert client.call("ListAliasesByKeyId", {"KeyId": first})["TotalCount"] == 0

    names = [item["AliasName"] for item in client.call("ListAliases", {"PageSize": 100})["Aliases"]["Alias"]]
    assert alias in names

    client.call("DeleteAlias", {"AliasName": alias})
    for action, params in (
        ("DescribeKey", {"KeyId": alias}),
        ("DeleteAlias", {"AliasName": alias}),
        ("UpdateAlias", {"KeyId": first, "AliasName": alias}),
    ):
        error = expect_failure(client, action, params)
        assert (error.code, error.http_status) == ("Forbidden.AliasNotFound", 404)


@pytest.mark.parametrize(
    "alias",
    ["byok-no-prefix", "alias/", "alias/acs-reserved", "alias/" + "a" * 250, "alias/space in name", "alias/ümlaut"],
)
def test_invalid_alias_names(client, alias: str) -> None:
    key_id = new_key(client)
    error = expect_failure(client, "CreateAlias", {"KeyId": key_id, "AliasName": alias})
    assert (error.code, error.http_status) == ("InvalidParameter", 400)


def test_update_alias_to_pending_deletion_key(client) -> None:
    first, second = new_key(client), new_key(client)
    alias = unique_alias()
    client.call("CreateAlias", {"KeyId": first, "AliasName": alias})
    client.call("ScheduleKeyDeletion", {"KeyId": second, "PendingWindowInDays": 7})
    error = expect_failure(client, "UpdateAlias", {"KeyId": second, "AliasName": alias})
    assert (error.code, error.http_status) == ("Rejected.PendingDeletion", 409)
    # DeleteAlias succeeds in every key state (state table).
    client.call("ScheduleKeyDeletion", {"KeyId": first, "PendingWindowInDays": 7})
    client.call("DeleteAlias", {"AliasName": alias})


def test_tags_round_trip(client) -> None:
    key_id = new_key(client)
    tags = [{"TagKey": "env", "TagValue": "test"}, {"TagKey": "owner", "TagValue": "byok"}]
    assert set(client.call("TagResource", {"KeyId": key_id, "Tags": json.dumps(tags)})) == {"RequestId"}
    listed = client.call("ListResourceTags", {"KeyId": key_id})["Tags"]["Tag"]
    assert listed == [{"KeyId": key_id, **tag} for tag in tags]

    client.call("TagResource", {"KeyId": key_id, "Tags": json.dumps([{"TagKey": "env", "TagValue": "prod"}])})
    client.call("UntagResource", {"KeyId": key_id, "TagKeys": json.dumps(["owner"])})
    assert client.call("ListResourceTags", {"KeyId": key_id})["Tags"]["Tag"] == [
        {"KeyId": key_id, "TagKey": "env", "TagValue": "prod"}
    ]


@pytest.mark.parametrize(
    "tags",
    [
        "not json",
        "[]",
        json.dumps([{"TagKey": "acs:reserved", "TagValue": "x"}]),
        json.dumps([{"TagKey": "aliyun-thing", "TagValue": "x"}]),
        json.dumps([{"TagKey": "", "TagValue": "x"}]),
        json.dumps([{"TagKey": "k" * 129, "TagValue": "x"}]),
        json.dumps([{"TagKey": f"k{i}", "TagValue": "x"} for i in range(21)]),
    ],
)
def test_invalid_tags(client, tags: str) -> None:
    key_id = new_key(client)
    error = expect_failure(client, "TagResource", {"KeyId": key_id, "Tags": tags})
    assert (error.code, error.http_status) == ("InvalidParameter", 400)
    assert client.call("ListResourceTags", {"KeyId": key_id})["Tags"]["Tag"] == []


def test_generate_data_key_semantics(client) -> None:
    key_id = new_key(client)
    body = client.call("GenerateDataKey", {"KeyId": key_id, "EncryptionContext": {"purpose": "test"}})
    assert set(body) == {"KeyId", "KeyVersionId", "CiphertextBlob", "Plaintext", "RequestId"}
    assert len(base64.b64decode(body["Plaintext"])) == 32
    # The blob encrypts the base64 text of the data key, so Decrypt returns that text.
    decrypted = client.call("Decrypt", {"CiphertextBlob": body["CiphertextBlob"], "EncryptionContext": {"purpose": "test"}})
    assert decrypted["Plaintext"] == body["Plaintext"]


@pytest.mark.parametrize(
    ("params", "length"),
    [({"KeySpec": "AES_128"}, 16), ({"KeySpec": "AES_256"}, 32), ({"NumberOfBytes": 1}, 1), ({"KeySpec": "AES_128", "NumberOfBytes": 1024}, 1024)],
)
def test_data_key_length(client, params: dict, length: int) -> None:
    key_id = new_key(client)
    body = client.call("GenerateDataKey", {"KeyId": key_id, **params})
    assert len(base64.b64decode(body["Plaintext"])) == length


@pytest.mark.parametrize("params", [{"KeySpec": "AES_512"}, {"KeySpec": " AES_128"}, {"NumberOfBytes": 0}, {"NumberOfBytes": 1025}])
def test_data_key_invalid_length(client, params: dict) -> None:
    key_id = new_key(client)
    error = expect_failure(client, "GenerateDataKey", {"KeyId": key_id, **params})
    assert (error.code, error.http_status) == ("InvalidParameter", 400)


def test_data_key_without_plaintext(client) -> None:
    key_id = new_key(client)
    body = client.call("GenerateDataKeyWithoutPlaintext", {"KeyId": key_id, "NumberOfBytes": 16})
    assert set(body) == {"KeyId", "KeyVersionId", "CiphertextBlob", "RequestId"}
    plaintext = client.call("Decrypt", {"CiphertextBlob": body["CiphertextBlob"]})["Plaintext"]
    assert len(base64.b64decode(plaintext)) == 16


def test_describe_regions(client, shared_emulator: EmulatorProcess) -> None:
    body = client.call("DescribeRegions", {})
    assert body["Regions"] == {"Region": [{"RegionId": shared_emulator.region}]}
