"""byok.kms.KmsClient against the emulator: typed results and one error type for every rejection."""

from __future__ import annotations

import socket

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
