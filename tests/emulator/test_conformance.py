"""Every served KMS action's raw JSON response round-trips through the Tea SDK's typed response model.

``<Action>ResponseBody().from_map(body).to_map()`` drops any field the model does not
know, so equality proves that no field is missing from the model or misnamed.
"""

from __future__ import annotations

import json
import os
import uuid

import pytest
from alibabacloud_kms20160120 import models as tea_models

from byok.emulator.process import EmulatorProcess
from tests.emulator.raw import encode_query, send, v1_params
from tests.emulator.test_import import wrap


def call(emulator: EmulatorProcess, action: str, params: dict | None = None) -> dict:
    response = send(emulator, "POST", encode_query(v1_params(emulator, action, params or {})))
    assert response.status == 200, (action, response.body.get("Code"))
    return response.body


@pytest.fixture(scope="module")
def responses(shared_emulator: EmulatorProcess) -> dict[str, dict]:
    """One successful raw response per served action."""
    e = shared_emulator
    bodies: dict[str, dict] = {}
    bodies["CreateKey"] = call(e, "CreateKey", {"Origin": "EXTERNAL"})
    key_id = bodies["CreateKey"]["KeyMetadata"]["KeyId"]
    bodies["GetParametersForImport"] = call(
        e, "GetParametersForImport", {"KeyId": key_id, "WrappingAlgorithm": "RSAES_OAEP_SHA_1", "WrappingKeySpec": "RSA_2048"}
    )
    parameters = bodies["GetParametersForImport"]
    bodies["ImportKeyMaterial"] = call(
        e,
        "ImportKeyMaterial",
        {
            "KeyId": key_id,
            "EncryptedKeyMaterial": wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_1", os.urandom(32)),
            "ImportToken": parameters["ImportToken"],
            "KeyMaterialExpireUnix": "0",
        },
    )
    bodies["DescribeKey"] = call(e, "DescribeKey", {"KeyId": key_id})
    version_id = bodies["DescribeKey"]["KeyMetadata"]["PrimaryKeyVersion"]
    bodies["ListKeys"] = call(e, "ListKeys")
    bodies["Encrypt"] = call(e, "Encrypt", {"KeyId": key_id, "Plaintext": "conformance"})
    bodies["Decrypt"] = call(e, "Decrypt", {"CiphertextBlob": bodies["Encrypt"]["CiphertextBlob"]})
    bodies["GenerateDataKey"] = call(e, "GenerateDataKey", {"KeyId": key_id})
    bodies["GenerateDataKeyWithoutPlaintext"] = call(e, "GenerateDataKeyWithoutPlaintext", {"KeyId": key_id})
    bodies["DescribeRegions"] = call(e, "DescribeRegions")
    alias = f"alias/conformance-{uuid.uuid4().hex[:8]}"
    bodies["CreateAlias"] = call(e, "CreateAlias", {"KeyId": key_id, "AliasName": alias})
    bodies["UpdateAlias"] = call(e, "UpdateAlias", {"KeyId": key_id, "AliasName": alias})
    bodies["ListAliases"] = call(e, "ListAliases")
    bodies["ListAliasesByKeyId"] = call(e, "ListAliasesByKeyId", {"KeyId": key_id})
    bodies["DeleteAlias"] = call(e, "DeleteAlias", {"AliasName": alias})
    bodies["ListKeyVersions"] = call(e, "ListKeyVersions", {"KeyId": key_id})
    bodies["DescribeKeyVersion"] = call(e, "DescribeKeyVersion", {"KeyId": key_id, "KeyVersionId": version_id})
    bodies["TagResource"] = call(e, "TagResource", {"KeyId": key_id, "Tags": json.dumps([{"TagKey": "a", "TagValue": "b"}])})
    bodies["ListResourceTags"] = call(e, "ListResourceTags", {"KeyId": key_id})
    bodies["UntagResource"] = call(e, "UntagResource", {"KeyId": key_id, "TagKeys": json.dumps(["a"])})
    bodies["DisableKey"] = call(e, "DisableKey", {"KeyId": key_id})
    bodies["EnableKey"] = call(e, "EnableKey", {"KeyId": key_id})
    bodies["ScheduleKeyDeletion"] = call(e, "ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": "7"})
    bodies["DeleteKeyMaterial"] = call(e, "DeleteKeyMaterial", {"KeyId": key_id})
    bodies["CancelKeyDeletion"] = call(e, "CancelKeyDeletion", {"KeyId": key_id})
    return bodies


def test_every_action_covered(responses: dict[str, dict], tmp_path) -> None:
    from byok.emulator.spec import load_spec

    assert set(responses) == set(load_spec())


@pytest.mark.parametrize(
    "action",
    sorted(
        ["CreateKey", "DescribeKey", "ListKeys", "GetParametersForImport", "ImportKeyMaterial", "Encrypt", "Decrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "DescribeRegions", "DeleteKeyMaterial", "EnableKey", "DisableKey", "ScheduleKeyDeletion", "CancelKeyDeletion", "CreateAlias", "UpdateAlias", "DeleteAlias", "ListAliases", "ListAliasesByKeyId", "ListKeyVersions", "DescribeKeyVersion", "TagResource", "UntagResource", "ListResourceTags"]
    ),
)
def test_response_matches_tea_model(responses: dict[str, dict], action: str) -> None:
    body = responses[action]
    model = getattr(tea_models, f"{action}ResponseBody")().from_map(body)
    assert model.to_map() == body
