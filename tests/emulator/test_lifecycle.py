"""Key lifecycle through the SDKs: the state table, material deletion and re-import, deletion windows."""

from __future__ import annotations

import os

import pytest

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import KmsCallFailed, make_client
from tests.emulator.test_import import (
    advance_clock,
    create_external_key,
    import_material,
    import_parameters,
    key_state,
    wrap,
)


def expect_failure(client, action: str, params: dict) -> KmsCallFailed:
    __tracebackhide__ = True
    with pytest.raises(KmsCallFailed) as caught:
        client.call(action, params)
    return caught.value


def import_new_material(client, key_id: str, material: bytes, expire_unix: int = 0) -> None:
    __tracebackhide__ = True
    parameters = import_parameters(client, key_id, "RSAES_OAEP_SHA_1")
    import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_1", material), expire_unix)


def enabled_external_key(client) -> tuple[str, bytes]:
    key_id = create_external_key(client)
    material = os.urandom(32)
    import_new_material(client, key_id, material)
    return key_id, material


def test_disable_then_enable(client) -> None:
    key_id, _ = enabled_external_key(client)
    assert set(client.call("DisableKey", {"KeyId": key_id})) == {"RequestId"}
    assert key_state(client, key_id) == "Disabled"
    error = expect_failure(client, "Encrypt", {"KeyId": key_id, "Plaintext": "x"})
    assert (error.code, error.http_status) == ("Rejected.Disabled", 409)
    client.call("EnableKey", {"KeyId": key_id})
    assert key_state(client, key_id) == "Enabled"
    assert client.call("Encrypt", {"KeyId": key_id, "Plaintext": "x"})["KeyId"] == key_id


def test_enable_pending_import_rejected(client) -> None:
    key_id = create_external_key(client)
    for action in ("EnableKey", "DisableKey", "CancelKeyDeletion"):
        error = expect_failure(client, action, {"KeyId": key_id})
        assert (error.code, error.http_status) == ("Rejected.StateModifiedFailed", 409)
    assert key_state(client, key_id) == "PendingImport"


def test_delete_key_material_then_reimport(client) -> None:
    key_id, material = enabled_external_key(client)
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "kept secret"})["CiphertextBlob"]

    assert set(client.call("DeleteKeyMaterial", {"KeyId": key_id})) == {"RequestId"}
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["KeyState"] == "PendingImport"
    assert metadata["MaterialExpireTime"] == ""
    error = expect_failure(client, "Decrypt", {"CiphertextBlob": blob})
    assert (error.code, error.http_status) == ("Rejected.PendingImport", 409)

    import_new_material(client, key_id, material)
    assert key_state(client, key_id) == "Enabled"
    assert client.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "kept secret"


def test_reimport_different_material_keeps_key(client) -> None:
    key_id, _ = enabled_external_key(client)
    client.call("DeleteKeyMaterial", {"KeyId": key_id})
    parameters = import_parameters(client, key_id, "RSAES_OAEP_SHA_1")
    error = expect_failure(
        client,
        "ImportKeyMaterial",
        {
            "KeyId": key_id,
            "EncryptedKeyMaterial": wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_1", os.urandom(32)),
            "ImportToken": parameters["ImportToken"],
            "KeyMaterialExpireUnix": 0,
        },
    )
    assert (error.code, error.http_status) == ("InvalidKeyMaterial", 400)
    assert key_state(client, key_id) == "PendingImport"


def test_delete_material_of_kms_key_rejected(client) -> None:
    key_id = client.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    error = expect_failure(client, "DeleteKeyMaterial", {"KeyId": key_id})
    assert error.code == "Unsupported.Origin"
    assert key_state(client, key_id) == "Enabled"


def test_schedule_and_cancel_deletion(client) -> None:
    key_id, _ = enabled_external_key(client)
    assert set(client.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})) == {"RequestId"}
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["KeyState"] == "PendingDeletion"
    assert metadata["DeleteDate"].endswith("Z")

    for action, params in (
        ("Encrypt", {"KeyId": key_id, "Plaintext": "x"}),
        ("GenerateDataKey", {"KeyId": key_id}),
    ):
        error = expect_failure(client, action, params)
        assert (error.code, error.http_status) == ("Rejected.PendingDeletion", 409)
    for action, params in (
        ("EnableKey", {"KeyId": key_id}),
        ("DisableKey", {"KeyId": key_id}),
        ("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7}),
        ("CreateAlias", {"KeyId": key_id, "AliasName": f"alias/pending-{key_id[:8]}"}),
    ):
        error = expect_failure(client, action, params)
        assert (error.code, error.http_status) == ("Rejected.StateModifiedFailed", 409)

    client.call("CancelKeyDeletion", {"KeyId": key_id})
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["KeyState"] == "Enabled"
    assert metadata["DeleteDate"] == ""


def test_delete_material_keeps_pending_deletion(client) -> None:
    key_id, material = enabled_external_key(client)
    client.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 30})
    delete_date = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["DeleteDate"]
    client.call("DeleteKeyMaterial", {"KeyId": key_id})
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["KeyState"] == "PendingDeletion"
    assert metadata["DeleteDate"] == delete_date
    error = expect_failure(
        client,
        "ImportKeyMaterial",
        {"KeyId": key_id, "EncryptedKeyMaterial": "AAAA", "ImportToken": "AAAA", "KeyMaterialExpireUnix": 0},
    )
    assert error.code == "Rejected.StateModifiedFailed"
    client.call("CancelKeyDeletion", {"KeyId": key_id})
    assert key_state(client, key_id) == "PendingImport"
    import_new_material(client, key_id, material)
    assert key_state(client, key_id) == "Enabled"


@pytest.mark.parametrize("days", ["6", "367", "seven", "0"])
def test_pending_window_out_of_range(client, days: str) -> None:
    key_id, _ = enabled_external_key(client)
    error = expect_failure(client, "ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": days})
    assert (error.code, error.http_status) == ("InvalidParameter", 400)
    assert key_state(client, key_id) == "Enabled"


def test_deletion_window_destroys_key(own_emulator: EmulatorProcess) -> None:
    client = make_client("tea-acs3", own_emulator)
    key_id, _ = enabled_external_key(client)
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "gone"})["CiphertextBlob"]
    client.call("CreateAlias", {"KeyId": key_id, "AliasName": "alias/doomed"})
    client.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": 7})

    advance_clock(own_emulator, "6d")
    assert key_state(client, key_id) == "PendingDeletion"
    advance_clock(own_emulator, "1d")
    for action, params in (
        ("DescribeKey", {"KeyId": key_id}),
        ("Decrypt", {"CiphertextBlob": blob}),
        ("CancelKeyDeletion", {"KeyId": key_id}),
    ):
        error = expect_failure(client, action, params)
        assert (error.code, error.http_status) == ("Forbidden.KeyNotFound", 404)
    listed = [key["KeyId"] for key in client.call("ListKeys", {"PageSize": 100})["Keys"]["Key"]]
    assert key_id not in listed
    assert client.call("ListAliases", {})["TotalCount"] == 0


def test_material_expiry_then_reimport(own_emulator: EmulatorProcess) -> None:
    client = make_client("old-sdk", own_emulator)
    key_id = create_external_key(client)
    material = os.urandom(32)
    now = int(own_emulator_now(own_emulator))
    import_new_material(client, key_id, material, expire_unix=now + 3600)
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "before expiry"})["CiphertextBlob"]

    advance_clock(own_emulator, "2h")
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["KeyState"] == "PendingImport"
    assert metadata["MaterialExpireTime"] == ""
    error = expect_failure(client, "Decrypt", {"CiphertextBlob": blob})
    assert error.code == "Rejected.PendingImport"

    import_new_material(client, key_id, material)
    assert key_state(client, key_id) == "Enabled"
    assert client.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "before expiry"


def own_emulator_now(emulator: EmulatorProcess) -> float:
    from byok.emulator.clock import EmulatedClock

    return EmulatedClock(emulator.data_dir).now()


def test_key_versions(client) -> None:
    key_id, _ = enabled_external_key(client)
    primary = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["PrimaryKeyVersion"]
    body = client.call("ListKeyVersions", {"KeyId": key_id})
    assert body["TotalCount"] == 1
    assert body["KeyVersions"]["KeyVersion"][0]["KeyVersionId"] == primary
    assert body["KeyVersions"]["KeyVersion"][0]["KeyId"] == key_id
    version = client.call("DescribeKeyVersion", {"KeyId": key_id, "KeyVersionId": primary})["KeyVersion"]
    assert version["KeyVersionId"] == primary
    assert version["CreationDate"].endswith("Z")
    error = expect_failure(client, "DescribeKeyVersion", {"KeyId": key_id, "KeyVersionId": "00000000-0000-4000-8000-000000000000"})
    assert (error.code, error.http_status) == ("Forbidden.KeyVersionNotFound", 404)


@pytest.mark.parametrize("dry_run", ["true", "True", "TRUE"])
def test_dry_run_never_encrypts(shared_emulator: EmulatorProcess, dry_run: str) -> None:
    client = make_client("old-sdk", shared_emulator)
    key_id, _ = enabled_external_key(client)
    for action, params in (
        ("Encrypt", {"KeyId": key_id, "Plaintext": "x", "DryRun": dry_run}),
        ("GenerateDataKey", {"KeyId": key_id, "DryRun": dry_run}),
        ("GenerateDataKeyWithoutPlaintext", {"KeyId": key_id, "DryRun": dry_run}),
    ):
        error = expect_failure(client, action, params)
        assert error.code == "DryRunOperationError"


def test_dry_run_reports_state_first(client) -> None:
    key_id = create_external_key(client)
    error = expect_failure(client, "Encrypt", {"KeyId": key_id, "Plaintext": "x", "DryRun": True})
    assert error.code == "Rejected.PendingImport"


def test_list_keys_destroys_expired_key(own_emulator: EmulatorProcess) -> None:
    client = make_client("old-sdk", own_emulator)
    key_id = client.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    client.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": "7"})

    advance_clock(own_emulator, "7d")
    # ListKeys is the first request to touch the key after its window ended.
    listed = [key["KeyId"] for key in client.call("ListKeys", {"PageSize": "100"})["Keys"]["Key"]]

    assert key_id not in listed
    assert expect_failure(client, "DescribeKey", {"KeyId": key_id}).code == "Forbidden.KeyNotFound"
