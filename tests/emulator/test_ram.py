"""RAM on the emulator: users, AccessKeys and policies, and policy evaluation for KMS calls."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator

import pytest

from byok.emulator.policy import MalformedPolicy, Permissions, parse_policy_document
from byok.emulator.process import EmulatorProcess
from byok.errors import KmsError
from byok.kms import KmsClient
from byok.kms.ram import RamClient
from byok.secrets import Secret
from tests.emulator.sdk import KmsCallFailed, make_client


def permissions(*statements: dict) -> Permissions:
    return Permissions(parse_policy_document(json.dumps({"Version": "1", "Statement": list(statements)})))


KEY_ARN = "acs:kms:cn-hangzhou:1234567890123456:key/0a1b2c3d-0000-4000-8000-000000000000"


def test_policy_deny_wins_over_allow() -> None:
    granted = permissions(
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["kms:Delete*"], "Resource": ["acs:kms:*:*:key/*"]},
    )
    assert granted.allows("kms:Encrypt", KEY_ARN)
    assert not granted.allows("kms:DeleteKeyMaterial", KEY_ARN)


def test_policy_action_wildcards() -> None:
    granted = permissions({"Effect": "Allow", "Action": ["kms:List*", "kms:Describe?ey"], "Resource": "*"})
    assert granted.allows("kms:ListKeys", "acs:kms:cn-hangzhou:1:key")
    assert granted.allows("kms:DescribeKey", KEY_ARN)
    assert not granted.allows("kms:Encrypt", KEY_ARN)
    assert not granted.allows("ram:ListUsers", "*")


def test_policy_resource_wildcards() -> None:
    granted = permissions({"Effect": "Allow", "Action": "kms:Encrypt", "Resource": "acs:kms:cn-hangzhou:*:key/0a1b*"})
    assert granted.allows("kms:Encrypt", KEY_ARN)
    assert not granted.allows("kms:Encrypt", KEY_ARN.replace("cn-hangzhou", "eu-central-1"))
    assert not granted.allows("kms:Encrypt", KEY_ARN.replace("0a1b", "ffff"))


def test_policy_empty_denies() -> None:
    assert not Permissions(()).allows("kms:Encrypt", KEY_ARN)


def test_policy_condition_fails_closed() -> None:
    granted = permissions(
        {"Effect": "Allow", "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"kms:tag/a": "b"}}}
    )
    assert not granted.allows("kms:Encrypt", KEY_ARN)


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        json.dumps({"Version": "2", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
        json.dumps({"Version": "1", "Statement": []}),
        json.dumps({"Version": "1", "Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}),
        json.dumps({"Version": "1", "Statement": [{"Effect": "Allow", "Action": [], "Resource": "*"}]}),
    ],
)
def test_malformed_policies(document: str) -> None:
    with pytest.raises(MalformedPolicy):
        parse_policy_document(document)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("ram-emulator")) as process:
        yield process


def root_clients(emulator: EmulatorProcess) -> tuple[KmsClient, RamClient]:
    settings = dict(
        endpoint=emulator.endpoint,
        region=emulator.region,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret(),
    )
    return KmsClient(**settings), RamClient(**settings)


def user_with_policy(ram: RamClient, statements: list[dict]) -> tuple[str, str, Secret]:
    name = f"user-{uuid.uuid4().hex[:10]}"
    ram.create_user(name)
    ram.create_policy(f"policy-{name}", {"Version": "1", "Statement": statements})
    ram.attach_policy_to_user(name, f"policy-{name}")
    access_key = ram.create_access_key(name)
    return name, access_key.access_key_id, access_key.access_key_secret


@pytest.mark.parametrize("sdk_mode", ["old-sdk", "tea-acs3", "tea-v2"])
def test_least_privilege_user(emulator: EmulatorProcess, sdk_mode: str) -> None:
    kms, ram = root_clients(emulator)
    key = kms.create_key(origin="Aliyun_KMS").metadata
    _, access_key_id, secret = user_with_policy(
        ram, [{"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": [key.arn]}]
    )
    user = make_client(sdk_mode, emulator, access_key_id=access_key_id, secret=secret.reveal())
    blob = user.call("Encrypt", {"KeyId": key.key_id, "Plaintext": "allowed"})["CiphertextBlob"]
    assert user.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "allowed"
    assert user.call("DescribeRegions", {})["Regions"]["Region"]

    for action, params, arn in (
        ("DisableKey", {"KeyId": key.key_id}, key.arn),
        ("ScheduleKeyDeletion", {"KeyId": key.key_id, "PendingWindowInDays": 7}, key.arn),
        ("GenerateDataKey", {"KeyId": key.key_id}, key.arn),
        ("CreateKey", {}, f"acs:kms:{emulator.region}:{emulator.account_id}:key"),
        ("ListKeys", {}, f"acs:kms:{emulator.region}:{emulator.account_id}:key"),
    ):
        with pytest.raises(KmsCallFailed) as caught:
            user.call(action, params)
        assert (caught.value.code, caught.value.http_status) == ("Forbidden.NoPermission", 403)
        assert caught.value.message == f"This operation for {arn} is forbidden by permission system."
    assert kms.describe_key(key.key_id).metadata.key_state == "Enabled"


def test_alias_needs_alias_and_key(emulator: EmulatorProcess) -> None:
    kms, ram = root_clients(emulator)
    key = kms.create_key(origin="Aliyun_KMS").metadata
    alias = f"alias/ram-{uuid.uuid4().hex[:8]}"
    alias_arn = f"acs:kms:{emulator.region}:{emulator.account_id}:{alias}"
    _, key_only_id, key_only_secret = user_with_policy(
        ram, [{"Effect": "Allow", "Action": "kms:CreateAlias", "Resource": key.arn}]
    )
    _, both_id, both_secret = user_with_policy(
        ram, [{"Effect": "Allow", "Action": "kms:*Alias", "Resource": [key.arn, alias_arn]}]
    )
    key_only = KmsClient(endpoint=emulator.endpoint, region=emulator.region, access_key_id=key_only_id, access_key_secret=key_only_secret)
    with pytest.raises(KmsError) as caught:
        key_only.create_alias(alias, key.key_id)
    assert caught.value.code == "Forbidden.NoPermission"
    assert alias_arn in caught.value.message
    both = KmsClient(endpoint=emulator.endpoint, region=emulator.region, access_key_id=both_id, access_key_secret=both_secret)
    both.create_alias(alias, key.key_id)
    assert kms.list_aliases(key_id=key.key_id).aliases[0].alias_name == alias


def test_every_kms_action_checks_permission(emulator: EmulatorProcess) -> None:
    kms, ram = root_clients(emulator)
    key = kms.create_key(origin="EXTERNAL").metadata
    kms_key = kms.create_key(origin="Aliyun_KMS").metadata
    blob = kms.encrypt(kms_key.key_id, "x").ciphertext_blob
    kms.create_alias(f"alias/all-{key.key_id[:8]}", key.key_id)
    _, access_key_id, secret = user_with_policy(
        ram, [{"Effect": "Allow", "Action": "ram:GetUser", "Resource": "*"}]
    )
    user = make_client("old-sdk", emulator, access_key_id=access_key_id, secret=secret.reveal())
    calls = {
        "CreateKey": {},
        "DescribeKey": {"KeyId": key.key_id},
        "ListKeys": {},
        "GetParametersForImport": {"KeyId": key.key_id, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"},
        "ImportKeyMaterial": {"KeyId": key.key_id, "EncryptedKeyMaterial": "AAAA", "ImportToken": "AAAA", "KeyMaterialExpireUnix": 0},
        "Encrypt": {"KeyId": kms_key.key_id, "Plaintext": "x"},
        "Decrypt": {"CiphertextBlob": blob},
        "GenerateDataKey": {"KeyId": kms_key.key_id},
        "GenerateDataKeyWithoutPlaintext": {"KeyId": kms_key.key_id},
        "DeleteKeyMaterial": {"KeyId": key.key_id},
        "EnableKey": {"KeyId": key.key_id},
        "DisableKey": {"KeyId": key.key_id},
        "ScheduleKeyDeletion": {"KeyId": key.key_id, "PendingWindowInDays": 7},
        "CancelKeyDeletion": {"KeyId": key.key_id},
        "CreateAlias": {"KeyId": key.key_id, "AliasName": "alias/denied"},
        "UpdateAlias": {"KeyId": key.key_id, "AliasName": f"alias/all-{key.key_id[:8]}"},
        "DeleteAlias": {"AliasName": f"alias/all-{key.key_id[:8]}"},
        "ListAliases": {},
        "ListAliasesByKeyId": {"KeyId": key.key_id},
        "ListKeyVersions": {"KeyId": key.key_id},
        "DescribeKeyVersion": {"KeyId": key.key_id, "KeyVersionId": key.primary_key_version},
        "TagResource": {"KeyId": key.key_id, "Tags": json.dumps([{"TagKey": "a", "TagValue": "b"}])},
        "UntagResource": {"KeyId": key.key_id, "TagKeys": json.dumps(["a"])},
        "ListResourceTags": {"KeyId": key.key_id},
    }
    for action, params in calls.items():
        with pytest.raises(KmsCallFailed) as caught:
            user.call(action, params)
        assert caught.value.code == "Forbidden.NoPermission", action
    assert kms.describe_key(key.key_id).metadata.key_state == "PendingImport"


def test_user_lifecycle_and_conflicts(emulator: EmulatorProcess) -> None:
    _, ram = root_clients(emulator)
    name = f"user-{uuid.uuid4().hex[:10]}"
    created = ram.create_user(name, display_name="Test user")
    assert len(created.user_id) == 16
    assert ram.get_user(name).display_name == "Test user"
    with pytest.raises(KmsError) as caught:
        ram.create_user(name)
    assert caught.value.code == "EntityAlreadyExists.User"

    ram.create_policy(f"p-{name}", {"Version": "1", "Statement": [{"Effect": "Allow", "Action": "kms:List*", "Resource": "*"}]})
    ram.attach_policy_to_user(name, f"p-{name}")
    first = ram.create_access_key(name)
    ram.create_access_key(name)
    with pytest.raises(KmsError) as caught:
        ram.create_access_key(name)
    assert caught.value.code == "LimitExceeded.User.AccessKey"
    with pytest.raises(KmsError) as caught:
        ram.delete_user(name)
    assert caught.value.code == "DeleteConflict.User.AccessKey"
    with pytest.raises(KmsError) as caught:
        ram.delete_policy(f"p-{name}")
    assert caught.value.code == "DeleteConflict.Policy.User"

    for summary in ram.list_access_keys(name):
        ram.delete_access_key(name, summary.access_key_id)
    revoked = KmsClient(endpoint=emulator.endpoint, region=emulator.region, access_key_id=first.access_key_id, access_key_secret=first.access_key_secret)
    with pytest.raises(KmsError) as caught:
        revoked.list_keys()
    assert caught.value.code == "InvalidAccessKeyId.NotFound"
    with pytest.raises(KmsError) as caught:
        ram.delete_user(name)
    assert caught.value.code == "DeleteConflict.User.Policy"
    assert [policy.policy_name for policy in ram.list_policies_for_user(name)] == [f"p-{name}"]
    ram.detach_policy_from_user(name, f"p-{name}")
    ram.delete_policy(f"p-{name}")
    ram.delete_user(name)
    with pytest.raises(KmsError) as caught:
        ram.get_user(name)
    assert (caught.value.code, caught.value.http_status) == ("EntityNotExist.User", 404)


def test_malformed_policy_rejected(emulator: EmulatorProcess) -> None:
    _, ram = root_clients(emulator)
    with pytest.raises(KmsError) as caught:
        ram.create_policy("broken", {"Version": "1", "Statement": [{"Effect": "Allow"}]})
    assert (caught.value.code, caught.value.http_status) == ("MalformedPolicyDocument", 400)


def test_user_secret_sealed_at_rest(emulator: EmulatorProcess) -> None:
    _, ram = root_clients(emulator)
    name = f"user-{uuid.uuid4().hex[:10]}"
    ram.create_user(name)
    access_key = ram.create_access_key(name)
    secret_bytes = access_key.access_key_secret.reveal().encode("utf-8")
    for path in emulator.data_dir.glob("kms.sqlite3*"):
        assert secret_bytes not in path.read_bytes(), path.name
    with sqlite3.connect(emulator.data_dir / "kms.sqlite3") as connection:
        (sealed,) = connection.execute(
            "SELECT secret_sealed FROM access_keys WHERE access_key_id = ?", (access_key.access_key_id,)
        ).fetchone()
    assert secret_bytes not in sealed


def test_ram_user_needs_ram_permission(emulator: EmulatorProcess) -> None:
    _, ram = root_clients(emulator)
    _, access_key_id, secret = user_with_policy(ram, [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}])
    user_ram = RamClient(endpoint=emulator.endpoint, region=emulator.region, access_key_id=access_key_id, access_key_secret=secret)
    with pytest.raises(KmsError) as caught:
        user_ram.create_user("escalation")
    assert caught.value.code == "Forbidden.NoPermission"
