"""byok.kms.KmsClient against the emulator: typed results and one error type for every rejection."""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime

import pytest

from byok.emulator.process import EmulatorProcess
from byok.errors import ConfigError, KmsError, KmsTransportError
from byok.kms import KmsClient, KmsEndpoint
from byok.secrets import Secret


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    folder = tmp_path_factory.mktemp("emulator")
    with EmulatorProcess(folder / "data", folder / "secret") as process:
        yield process


@pytest.fixture(scope="module")
def client(emulator) -> KmsClient:
    return KmsClient(
        endpoint=emulator.endpoint,
        region=emulator.region,
        access_key_id=emulator.access_key_id,
        access_key_secret=emulator.access_key_secret(),
    )


def test_create_and_describe_key(client) -> None:
    created = client.create_key(origin="EXTERNAL", description="client test")
    assert created.metadata.key_state == "PendingImport"
    assert created.request_id
    described = client.describe_key(created.metadata.key_id)
    assert described.metadata.arn == created.metadata.arn
    assert described.metadata.origin == "EXTERNAL"


def test_unknown_key_raises_kms_error(client) -> None:
    with pytest.raises(KmsError) as rejected:
        client.describe_key("00000000-0000-4000-8000-000000000000")
    assert rejected.value.code == "Forbidden.KeyNotFound"
    assert rejected.value.http_status == 404
    assert rejected.value.request_id
    assert rejected.value.action == "DescribeKey"


def test_import_token_is_secret(client) -> None:
    key_id = client.create_key(origin="EXTERNAL").metadata.key_id
    parameters = client.get_parameters_for_import(key_id, wrapping_algorithm="RSAES_OAEP_SHA_1")
    assert isinstance(parameters.import_token, Secret)
    assert parameters.import_token.reveal() not in repr(parameters)
    assert parameters.key_id == key_id


def test_wrong_secret_hides_string_to_sign(emulator) -> None:
    wrong = KmsClient(
        endpoint=emulator.endpoint,
        region=emulator.region,
        access_key_id=emulator.access_key_id,
        access_key_secret=Secret("not-the-right-secret-000000000", "wrong secret"),
    )
    with pytest.raises(KmsError) as rejected:
        wrong.encrypt("alias/none", "data")
    assert rejected.value.code in ("SignatureDoesNotMatch", "InvalidAccessKeySecret")
    assert rejected.value.http_status == 400
    assert "Plaintext" not in str(rejected.value)


def test_calls_are_recorded(client) -> None:
    before = len(client.calls)
    client.list_keys()
    assert len(client.calls) == before + 1
    assert client.calls[-1].action == "ListKeys"
    assert client.calls[-1].request_id


def test_unreachable_endpoint_raises_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = KmsClient(
        endpoint=f"http://127.0.0.1:{port}",
        region="cn-hangzhou",
        access_key_id="LTAIunreachable",
        access_key_secret=Secret("unreachable-secret-0000", "unused"),
        timeout_seconds=2,
    )
    with pytest.raises(KmsTransportError, match=str(port)):
        client.list_keys()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("kms.cn-hangzhou.aliyuncs.com", ("kms.cn-hangzhou.aliyuncs.com", 443, "https")),
        ("http://127.0.0.1:8080", ("127.0.0.1", 8080, "http")),
        ("https://kms.eu-central-1.aliyuncs.com", ("kms.eu-central-1.aliyuncs.com", 443, "https")),
    ],
)
def test_endpoint_parsing(endpoint, expected) -> None:
    parsed = KmsEndpoint.parse(endpoint)
    assert (parsed.host, parsed.port, parsed.protocol) == expected


def test_plain_http_to_remote_host_rejected() -> None:
    with pytest.raises(ConfigError, match="plain HTTP"):
        KmsEndpoint.parse("http://kms.cn-hangzhou.aliyuncs.com")


def test_lifecycle_methods(client) -> None:
    key_id = client.create_key(origin="Aliyun_KMS").metadata.key_id
    assert client.disable_key(key_id)
    assert client.describe_key(key_id).metadata.key_state == "Disabled"
    with pytest.raises(KmsError) as caught:
        client.encrypt(key_id, "x")
    assert caught.value.code == "Rejected.Disabled"
    assert client.enable_key(key_id)
    assert client.schedule_key_deletion(key_id, 7)
    assert client.describe_key(key_id).metadata.key_state == "PendingDeletion"
    assert client.cancel_key_deletion(key_id)
    assert client.describe_key(key_id).metadata.key_state == "Enabled"


def test_delete_key_material_of_kms_key(client) -> None:
    key_id = client.create_key(origin="Aliyun_KMS").metadata.key_id
    with pytest.raises(KmsError) as caught:
        client.delete_key_material(key_id)
    assert caught.value.code == "Unsupported.Origin"


def test_alias_methods(client, emulator) -> None:
    key_id = client.create_key(origin="Aliyun_KMS").metadata.key_id
    other_id = client.create_key(origin="Aliyun_KMS").metadata.key_id
    assert client.create_alias("alias/client-test", key_id)
    listed = client.list_aliases(key_id=key_id)
    assert [alias.alias_name for alias in listed.aliases] == ["alias/client-test"]
    assert listed.aliases[0].alias_arn == f"acs:kms:{emulator.region}:{emulator.account_id}:alias/client-test"
    assert client.update_alias("alias/client-test", other_id)
    assert client.encrypt("alias/client-test", "x").key_id == other_id
    assert "alias/client-test" in [alias.alias_name for alias in client.list_aliases().aliases]
    assert client.delete_alias("alias/client-test")
    with pytest.raises(KmsError) as caught:
        client.delete_alias("alias/client-test")
    assert (caught.value.code, caught.value.http_status) == ("Forbidden.AliasNotFound", 404)


def test_data_key_methods(client) -> None:
    key_id = client.create_key(origin="Aliyun_KMS").metadata.key_id
    data_key = client.generate_data_key(key_id, key_spec="AES_128", encryption_context={"a": "b"})
    assert data_key.plaintext is not None
    assert "Secret" in repr(data_key.plaintext) or data_key.plaintext.reveal() not in repr(data_key)
    decrypted = client.decrypt(data_key.ciphertext_blob, encryption_context={"a": "b"})
    assert decrypted.plaintext == data_key.plaintext.reveal()
    without = client.generate_data_key_without_plaintext(key_id, number_of_bytes=64)
    assert without.plaintext is None
    assert without.key_version_id == data_key.key_version_id


def test_version_region_tag_methods(client, emulator) -> None:
    key_id = client.create_key(origin="Aliyun_KMS").metadata.key_id
    versions = client.list_key_versions(key_id)
    assert versions.total_count == 1
    version = client.describe_key_version(key_id, versions.versions[0].key_version_id)
    assert version.key_id == key_id
    assert client.describe_regions() == [emulator.region]
    client.tag_resource(key_id, {"team": "security", "env": "test"})
    client.untag_resource(key_id, ["env"])
    assert client.list_resource_tags(key_id) == {"team": "security"}


def test_server_time_from_date_header(client) -> None:
    client.list_keys()
    assert client.last_server_time is not None, "the SDK no longer hands byok the response headers"
    assert client.calls[-1].server_time is not None
    skew = abs((client.server_now() - datetime.now(UTC)).total_seconds())
    assert skew < 3600, f"the emulator's Date header is {skew:.0f} s away from this machine's clock"


def test_sdk_log_keeps_parameters_out(client, caplog) -> None:
    key_id = client.create_key(origin="EXTERNAL").metadata.key_id
    with caplog.at_level(logging.DEBUG, logger="aliyunsdkcore"):
        parameters = client.get_parameters_for_import(key_id, wrapping_algorithm="RSAES_OAEP_SHA_1")
    token = parameters.import_token.reveal()
    assert all(token not in record.getMessage() for record in caplog.records)
    assert all(record.levelno >= logging.INFO for record in caplog.records if record.name.startswith("aliyunsdkcore"))
