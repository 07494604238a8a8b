"""Bring-your-own-key import: the full flow per wrapping algorithm and its negative controls."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import KmsCallFailed, TeaSdkClient, make_client

ALGORITHMS = ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1", "RSAES_PKCS1_V1_5")


def wrap(public_key_b64: str, algorithm: str, material: bytes) -> str:
    """Encrypt material under the PublicKey of GetParametersForImport, as an HSM would."""
    public_key = serialization.load_der_public_key(base64.b64decode(public_key_b64))
    assert isinstance(public_key, rsa.RSAPublicKey)
    if algorithm == "RSAES_OAEP_SHA_256":
        scheme = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    elif algorithm == "RSAES_OAEP_SHA_1":
        scheme = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)
    else:
        scheme = padding.PKCS1v15()
    return base64.b64encode(public_key.encrypt(material, scheme)).decode("ascii")


def create_external_key(client) -> str:
    return client.call("CreateKey", {"Origin": "EXTERNAL"})["KeyMetadata"]["KeyId"]


def import_parameters(client, key_id: str, algorithm: str = "RSAES_OAEP_SHA_256") -> dict:
    return client.call(
        "GetParametersForImport",
        {"KeyId": key_id, "WrappingAlgorithm": algorithm, "WrappingKeySpec": "RSA_2048"},
    )


def import_material(client, key_id: str, parameters: dict, encrypted: str, expire_unix: int = 0) -> dict:
    # Keeps the import token out of failure reports.
    __tracebackhide__ = True
    return client.call(
        "ImportKeyMaterial",
        {
            "KeyId": key_id,
            "EncryptedKeyMaterial": encrypted,
            "ImportToken": parameters["ImportToken"],
            "KeyMaterialExpireUnix": expire_unix,
        },
    )


def expect_failure(client, action: str, params: dict) -> KmsCallFailed:
    with pytest.raises(KmsCallFailed) as caught:
        client.call(action, params)
    return caught.value


def expect_import_failure(client, key_id: str, parameters: dict, encrypted: str, expire_unix: int = 0) -> KmsCallFailed:
    __tracebackhide__ = True
    with pytest.raises(KmsCallFailed) as caught:
        import_material(client, key_id, parameters, encrypted, expire_unix)
    return caught.value


def key_state(client, key_id: str) -> str:
    return client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["KeyState"]


def advance_clock(emulator: EmulatorProcess, duration: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "byok.emulator", "clock", "--data-dir", str(emulator.data_dir), "--advance", duration],
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_full_import_flow(client, algorithm: str) -> None:
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id, algorithm)
    assert parameters["KeyId"] == key_id
    public_key = serialization.load_der_public_key(base64.b64decode(parameters["PublicKey"]))
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == 2048
    assert parameters["TokenExpireTime"].endswith("Z")

    material = os.urandom(32)
    response = import_material(client, key_id, parameters, wrap(parameters["PublicKey"], algorithm, material))
    assert set(response) == {"RequestId"}
    assert key_state(client, key_id) == "Enabled"

    plain = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "round trip"})
    assert client.call("Decrypt", {"CiphertextBlob": plain["CiphertextBlob"]})["Plaintext"] == "round trip"
    context = {"tenant": "byok", "step": "import"}
    bound = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "with context", "EncryptionContext": context})
    decrypted = client.call("Decrypt", {"CiphertextBlob": bound["CiphertextBlob"], "EncryptionContext": context})
    assert decrypted["Plaintext"] == "with context"
    assert decrypted["KeyId"] == key_id


def test_token_expire_time_is_24_hours(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    expires = time.mktime(time.strptime(parameters["TokenExpireTime"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (time.time() + 86400)) < 300


def test_each_call_issues_new_key_pair(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    first = import_parameters(client, key_id)
    second = import_parameters(client, key_id)
    assert first["PublicKey"] != second["PublicKey"]
    # Compare digests so a failure report does not print the tokens.
    assert hashlib.sha256(first["ImportToken"].encode()).digest() != hashlib.sha256(second["ImportToken"].encode()).digest()


@pytest.mark.parametrize(
    ("token_algorithm", "wrap_algorithm"),
    [
        ("RSAES_OAEP_SHA_256", "RSAES_OAEP_SHA_1"),
        ("RSAES_OAEP_SHA_256", "RSAES_PKCS1_V1_5"),
        ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"),
        ("RSAES_PKCS1_V1_5", "RSAES_OAEP_SHA_256"),
    ],
)
def test_wrong_wrapping_algorithm_rejected(shared_emulator: EmulatorProcess, token_algorithm: str, wrap_algorithm: str) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id, token_algorithm)
    encrypted = wrap(parameters["PublicKey"], wrap_algorithm, os.urandom(32))
    failure = expect_import_failure(client, key_id, parameters, encrypted)
    assert failure.code == "InvalidKeyMaterial"
    assert failure.http_status == 400
    assert failure.message == "key material is invalid"
    assert key_state(client, key_id) == "PendingImport"


@pytest.mark.parametrize("length", [16, 24, 31, 33])
def test_wrong_material_length_rejected(shared_emulator: EmulatorProcess, length: int) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    encrypted = wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(length))
    failure = expect_import_failure(client, key_id, parameters, encrypted)
    assert failure.code == "InvalidKeyMaterial"
    assert key_state(client, key_id) == "PendingImport"


def test_material_under_other_public_key_rejected(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    first = import_parameters(client, key_id)
    second = import_parameters(client, key_id)
    encrypted = wrap(first["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    failure = expect_import_failure(client, key_id, second, encrypted)
    assert failure.code == "InvalidKeyMaterial"


def test_token_of_other_key_rejected(client) -> None:
    key_a = create_external_key(client)
    key_b = create_external_key(client)
    parameters = import_parameters(client, key_a)
    encrypted = wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    failure = expect_import_failure(client, key_b, parameters, encrypted)
    assert failure.code == "InvalidImportToken"
    assert failure.message == "import token is invalid"
    assert key_state(client, key_b) == "PendingImport"
    # The token still works for the key it was issued for.
    import_material(client, key_a, parameters, encrypted)
    assert key_state(client, key_a) == "Enabled"


def test_unknown_token_rejected(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    encrypted = wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    forged = dict(parameters, ImportToken=base64.b64encode(os.urandom(48)).decode())
    assert expect_import_failure(client, key_id, forged, encrypted).code == "InvalidImportToken"
    not_base64 = dict(parameters, ImportToken="***")
    assert expect_import_failure(client, key_id, not_base64, encrypted).code == "InvalidImportToken"


def test_token_reusable_for_same_material(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    material = os.urandom(32)
    import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", material))
    import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", material))
    assert key_state(client, key_id) == "Enabled"


def test_different_material_on_reimport_rejected(client) -> None:
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)))
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "before"})["CiphertextBlob"]
    before = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]

    fresh = import_parameters(client, key_id)
    failure = expect_import_failure(client, key_id, fresh, wrap(fresh["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)))
    assert failure.code == "InvalidKeyMaterial"
    after = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert after == before
    assert after["KeyState"] == "Enabled"
    assert client.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "before"


def test_same_material_into_two_keys(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    material = os.urandom(32)
    key_a = create_external_key(client)
    key_b = create_external_key(client)
    for key_id in (key_a, key_b):
        parameters = import_parameters(client, key_id)
        import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", material))
    blob = client.call("Encrypt", {"KeyId": key_a, "Plaintext": "a"})["CiphertextBlob"]
    assert client.call("Decrypt", {"CiphertextBlob": blob})["KeyId"] == key_a


def test_material_expiry_in_past_rejected(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    encrypted = wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    failure = expect_import_failure(client, key_id, parameters, encrypted, expire_unix=int(time.time()) - 60)
    assert failure.code == "InvalidParameter"
    assert "KeyMaterialExpireUnix" in failure.message
    assert key_state(client, key_id) == "PendingImport"


def test_material_expire_time_shown(shared_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(shared_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    expire_unix = int(time.time()) + 7 * 86400
    import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32)), expire_unix)
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["MaterialExpireTime"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expire_unix))


def test_token_expires_after_24_hours(own_emulator: EmulatorProcess, sdk_mode: str) -> None:
    client = make_client(sdk_mode, own_emulator)
    key_id = create_external_key(client)
    parameters = import_parameters(client, key_id)
    encrypted = wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))

    advance_clock(own_emulator, "25h")
    failure = expect_import_failure(client, key_id, parameters, encrypted)
    assert failure.code == "ExpiredImportToken"
    assert failure.message == "import token is expired"
    assert key_state(client, key_id) == "PendingImport"


def test_material_expiry_by_clock(own_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(own_emulator)
    key_id = create_external_key(client)
    material = os.urandom(32)
    parameters = import_parameters(client, key_id)
    import_material(
        client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_256", material), int(time.time()) + 3600
    )
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "kept"})["CiphertextBlob"]

    advance_clock(own_emulator, "2h")
    metadata = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]
    assert metadata["KeyState"] == "PendingImport"
    assert metadata["MaterialExpireTime"] == ""
    failure = expect_failure(client, "Encrypt", {"KeyId": key_id, "Plaintext": "x"})
    assert failure.code == "Rejected.PendingImport"
    assert expect_failure(client, "Decrypt", {"CiphertextBlob": blob}).code == "Rejected.PendingImport"

    # Other material is still rejected; the bound material brings the key back.
    fresh = import_parameters(client, key_id)
    other = wrap(fresh["PublicKey"], "RSAES_OAEP_SHA_256", os.urandom(32))
    assert expect_import_failure(client, key_id, fresh, other).code == "InvalidKeyMaterial"
    import_material(client, key_id, fresh, wrap(fresh["PublicKey"], "RSAES_OAEP_SHA_256", material))
    assert key_state(client, key_id) == "Enabled"
    assert client.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "kept"


def test_restart_keeps_keys(tmp_path: Path) -> None:
    data_dir = tmp_path / "emulator"
    material = os.urandom(32)
    with EmulatorProcess(data_dir) as first:
        client = TeaSdkClient(first)
        external = create_external_key(client)
        parameters = import_parameters(client, external, "RSAES_OAEP_SHA_1")
        import_material(client, external, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_1", material))
        generated = client.call("CreateKey")["KeyMetadata"]["KeyId"]
        blobs = {
            key_id: client.call("Encrypt", {"KeyId": key_id, "Plaintext": f"old {key_id}"})["CiphertextBlob"]
            for key_id in (external, generated)
        }
        identity = (first.account_id, first.access_key_id, hashlib.sha256(first.access_key_secret().reveal().encode()).hexdigest())
        pending_token = parameters

    (data_dir / "root-access-key-secret").unlink()
    with EmulatorProcess(data_dir) as second:
        # The secret is compared by digest so a failure report does not print it.
        secret_digest = hashlib.sha256(second.access_key_secret().reveal().encode()).hexdigest()
        assert (second.account_id, second.access_key_id, secret_digest) == identity
        client = TeaSdkClient(second)
        for key_id, blob in blobs.items():
            decrypted = client.call("Decrypt", {"CiphertextBlob": blob})
            assert decrypted["Plaintext"] == f"old {key_id}"
            assert decrypted["KeyId"] == key_id
        assert key_state(client, external) == "Enabled"
        # The binding survives too: other material is still rejected after the restart.
        other = wrap(pending_token["PublicKey"], "RSAES_OAEP_SHA_1", os.urandom(32))
        assert expect_import_failure(client, external, pending_token, other).code == "InvalidKeyMaterial"
        import_material(client, external, pending_token, wrap(pending_token["PublicKey"], "RSAES_OAEP_SHA_1", material))
