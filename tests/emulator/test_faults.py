"""Fault injection through ``byok emulator faults`` on a running server, seen through both SDKs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alibabacloud_kms20160120 import models as tea_models
from alibabacloud_tea_openapi.exceptions import (
    ClientException,
    ServerException,
    ThrottlingException,
)
from darabonba.runtime import RuntimeOptions

from byok.emulator.faults import Fault, read_faults, write_faults
from byok.emulator.process import EmulatorProcess
from byok.errors import ConfigError, KmsError, KmsTransportError
from byok.kms import KmsClient
from tests.emulator.sdk import KmsCallFailed, TeaSdkClient, make_client


def faults_command(emulator: EmulatorProcess, *arguments: str) -> str:
    completed = subprocess.run(
        [sys.executable, "-m", "byok.emulator", "faults", "--data-dir", str(emulator.data_dir), *arguments],
        check=True,
        capture_output=True,
        text=True,
    )
    return completed.stdout


@pytest.mark.parametrize(
    ("code", "status"),
    [("Throttling", 400), ("Rejected.Throttling", 429), ("InternalFailure", 500), ("ServiceUnavailableTemporary", 503)],
)
def test_injected_error_through_old_sdk(own_emulator: EmulatorProcess, code: str, status: int) -> None:
    client = make_client("old-sdk", own_emulator)
    key_id = client.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    faults_command(own_emulator, "--action", "Encrypt", "--code", code)
    with pytest.raises(KmsCallFailed) as caught:
        client.call("Encrypt", {"KeyId": key_id, "Plaintext": "x"})
    assert (caught.value.code, caught.value.http_status) == (code, status)
    # Other actions are untouched.
    assert client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["KeyId"] == key_id
    faults_command(own_emulator, "--clear")
    assert client.call("Encrypt", {"KeyId": key_id, "Plaintext": "x"})["KeyId"] == key_id


def test_retry_after_raises_tea_throttling(own_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(own_emulator)
    key_id = client.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    faults_command(own_emulator, "--action", "Encrypt", "--code", "Rejected.Throttling", "--retry-after", "3")
    with pytest.raises(ThrottlingException) as caught:
        client._client.encrypt_with_options(
            tea_models.EncryptRequest(key_id=key_id, plaintext="x"), RuntimeOptions(autoretry=False)
        )
    assert caught.value.code == "Rejected.Throttling"
    assert caught.value.retry_after == 3


def test_tea_exception_classes(own_emulator: EmulatorProcess) -> None:
    client = TeaSdkClient(own_emulator)
    faults_command(own_emulator, "--action", "ListKeys", "--code", "Throttling")
    with pytest.raises(ClientException) as client_error:
        client._client.list_keys_with_options(tea_models.ListKeysRequest(), RuntimeOptions(autoretry=False))
    assert client_error.value.code == "Throttling"
    faults_command(own_emulator, "--action", "ListKeys", "--code", "ServiceUnavailableTemporary")
    with pytest.raises(ServerException) as server_error:
        client._client.list_keys_with_options(tea_models.ListKeysRequest(), RuntimeOptions(autoretry=False))
    assert server_error.value.code == "ServiceUnavailableTemporary"


def test_rate_zero_never_fails(own_emulator: EmulatorProcess) -> None:
    client = make_client("tea-acs3", own_emulator)
    faults_command(own_emulator, "--code", "InternalFailure", "--rate", "0")
    for _ in range(20):
        client.call("ListKeys", {})


def test_dropped_connection(own_emulator: EmulatorProcess) -> None:
    kms = KmsClient(
        endpoint=own_emulator.endpoint,
        region=own_emulator.region,
        access_key_id=own_emulator.access_key_id,
        access_key_secret=own_emulator.access_key_secret(),
        timeout_seconds=10,
    )
    faults_command(own_emulator, "--action", "ListKeys", "--drop-connection")
    with pytest.raises((KmsTransportError, KmsError)) as caught:
        kms.list_keys()
    assert not isinstance(caught.value, KmsError) or caught.value.http_status is None
    faults_command(own_emulator, "--clear", "--action", "ListKeys")
    assert kms.list_keys().request_id
    assert own_emulator.is_running()


def test_latency_listed(own_emulator: EmulatorProcess) -> None:
    output = faults_command(own_emulator, "--action", "Decrypt", "--latency-ms", "5")
    assert "Decrypt: code=- rate=1.0 latency_ms=5" in output
    assert read_faults(own_emulator.data_dir)["Decrypt"].latency_ms == 5
    client = make_client("old-sdk", own_emulator)
    key_id = client.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": "slow"})["CiphertextBlob"]
    assert client.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "slow"


def test_fault_settings_validated(tmp_path) -> None:
    for fault in (Fault(code="Nope"), Fault(code="Throttling", rate=1.5), Fault(), Fault(code="Throttling", retry_after=0)):
        with pytest.raises(ConfigError):
            write_faults(tmp_path, {"Encrypt": fault})
    assert read_faults(tmp_path) == {}
