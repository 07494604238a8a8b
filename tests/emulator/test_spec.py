"""The committed parameter spec: coverage of the served actions, its corrections, and validation over HTTP."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from byok.emulator.clock import EmulatedClock
from byok.emulator.handlers import KmsHandlers
from byok.emulator.process import EmulatorProcess
from byok.emulator.spec import load_spec
from tests.emulator.raw import encode_query, send, v1_params


def served_actions(tmp_path) -> set[str]:
    # KmsHandlers only needs a store for its actions table; no request is served here.
    return set(KmsHandlers(store=None, clock=EmulatedClock(tmp_path)).actions)  # type: ignore[arg-type]


def test_spec_covers_served_actions(tmp_path) -> None:
    assert set(load_spec()) == served_actions(tmp_path)


def test_spec_corrections_applied() -> None:
    spec = load_spec()
    for action in ("GenerateDataKey", "GenerateDataKeyWithoutPlaintext"):
        parameters = {parameter.name: parameter for parameter in spec[action]}
        assert parameters["KeySpec"].enum == ("AES_256", "AES_128")
        assert parameters["NumberOfBytes"].minimum == 1
    expire = {parameter.name: parameter for parameter in spec["ImportKeyMaterial"]}["KeyMaterialExpireUnix"]
    assert expire.required is False
    document = json.loads(resources.files("byok.emulator.spec").joinpath("kms-2016-01-20.json").read_text())
    assert len(document["corrections"]) >= 3


def test_every_parameter_names_source() -> None:
    for action, parameters in load_spec().items():
        for parameter in parameters:
            assert parameter.source, f"{action}.{parameter.name} has no source"


@pytest.mark.parametrize(
    ("action", "params", "code", "name"),
    [
        ("Encrypt", {"Plaintext": "x"}, "MissingParameter", "KeyId"),
        ("ScheduleKeyDeletion", {"KeyId": "k"}, "MissingParameter", "PendingWindowInDays"),
        ("CreateAlias", {"KeyId": "k"}, "MissingParameter", "AliasName"),
        ("TagResource", {"KeyId": "k"}, "MissingParameter", "Tags"),
        ("CreateKey", {"Origin": "external"}, "InvalidParameter", "Origin"),
        ("ListKeys", {"PageSize": "101"}, "InvalidParameter", "PageSize"),
        ("ListAliases", {"PageNumber": "0"}, "InvalidParameter", "PageNumber"),
        ("Encrypt", {"KeyId": "k", "Plaintext": "x", "DryRun": "yes"}, "InvalidParameter", "DryRun"),
        ("Encrypt", {"KeyId": "k", "Plaintext": "x", "EncryptionContext": "[1]"}, "InvalidParameter", "EncryptionContext"),
        ("GetParametersForImport", {"KeyId": "k", "WrappingAlgorithm": "RSA", "WrappingKeySpec": "RSA_2048"}, "InvalidParameter", "WrappingAlgorithm"),
    ],
)
def test_validation_errors(shared_emulator: EmulatorProcess, action: str, params: dict, code: str, name: str) -> None:
    response = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, action, params)))
    assert response.status == 400
    assert response.body["Code"] == code
    assert f'"{name}"' in response.body["Message"]


def test_boolean_case_insensitive(shared_emulator: EmulatorProcess) -> None:
    for value in ("FALSE", "False", "false"):
        response = send(
            shared_emulator, "POST", encode_query(v1_params(shared_emulator, "CreateKey", {"EnableAutomaticRotation": value}))
        )
        assert response.status == 200, response.body


def test_long_query_string(shared_emulator: EmulatorProcess) -> None:
    key_id = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "CreateKey"))).body["KeyMetadata"]["KeyId"]
    plaintext = "é/+ " * 1200  # 6000 bytes of UTF-8 that percent-encode to about 18 KB
    query = encode_query(v1_params(shared_emulator, "Encrypt", {"KeyId": key_id, "Plaintext": plaintext}))
    assert len(query) > 16384
    encrypted = send(shared_emulator, "POST", query)
    assert encrypted.status == 200, encrypted.body
    blob = encrypted.body["CiphertextBlob"]
    decrypted = send(shared_emulator, "POST", encode_query(v1_params(shared_emulator, "Decrypt", {"CiphertextBlob": blob})))
    assert decrypted.body["Plaintext"] == plaintext
