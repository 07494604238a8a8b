"""Sealing, co-signing and verifying a bundle with a real SoftHSM2 token and the real openssl binary."""

from __future__ import annotations

import datetime
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from byok.errors import ConfigError
from byok.evidence.bundle import SecretLeakFound, seal_bundle
from byok.evidence.manifest import ManifestError, build_manifest, parse_manifest
from byok.evidence.signing import add_cosignature, sign_detached
from byok.evidence.verify import verify_bundle
from byok.profile import parse_profile, resolve_module
from byok.secrets import Secret


@pytest.fixture(scope="module")
def profile():
    try:
        resolve_module("libsofthsm2.so")
    except ConfigError as error:
        pytest.skip(f"SoftHSM2 is not installed: {error}")
    return parse_profile(
        {
            "name": "bundle-test",
            "hsm": {
                "family": "softhsm",
                "module": "libsofthsm2.so",
                "token_label": "byok-bundle-test",
                "managed": True,
                "pin_env": "BYOK_BUNDLE_TEST_PIN_NEVER_SET",
                "pin_file": "secrets/softhsm-user-pin",
                "so_pin_file": "secrets/softhsm-so-pin",
            },
            "kms": {"endpoint": "emulator", "region": "cn-hangzhou"},
            "report": {"signer_label": "bundle-test-signer"},
        }
    )


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundle-state")


def _bundle(folder: Path) -> Path:
    folder.mkdir()
    (folder / "evidence.json").write_text('{"run": {"id": "test"}}\n')
    (folder / "notes").mkdir()
    (folder / "notes" / "summary.html").write_text("<p>summary</p>\n")
    return folder


def _openssl(folder: Path) -> int:
    return subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "SHA256SUMS.p7s",
         "-content", "SHA256SUMS", "-CAfile", "report-signer.pem", "-out", "/dev/null"],
        cwd=folder, capture_output=True, check=False,
    ).returncode


def test_seal_signs_with_token_key(profile, state: Path, tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "bundle")

    result = seal_bundle(folder, profile, state_dir=state)

    assert result.files == ["evidence.json", "notes/summary.html", "report-signer.pem"]
    assert "user PIN of token byok-bundle-test" in result.secrets_scanned
    assert _openssl(folder) == 0
    assert verify_bundle(folder).intact


def test_seal_reuses_signer_certificate(profile, state: Path, tmp_path: Path) -> None:
    first = seal_bundle(_bundle(tmp_path / "one"), profile, state_dir=state)
    second = seal_bundle(_bundle(tmp_path / "two"), profile, state_dir=state)

    assert second.signer_created is False
    assert (tmp_path / "one" / "report-signer.pem").read_bytes() == (tmp_path / "two" / "report-signer.pem").read_bytes()
    assert first.signer_subject == second.signer_subject


def test_seal_refuses_leaked_secret(profile, state: Path, tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "bundle")
    planted = Secret("planted-secret-value-for-the-leak-test", "planted test secret")
    (folder / "notes" / "log.txt").write_text(f"oops {planted.reveal()}\n")

    with pytest.raises(SecretLeakFound) as raised:
        seal_bundle(folder, profile, state_dir=state)

    assert "log.txt contains the planted test secret" in raised.value.message
    assert planted.reveal() not in raised.value.message
    assert not (folder / "SHA256SUMS").exists()
    assert not (folder / "SHA256SUMS.p7s").exists()


def test_seal_refuses_base64_leak(profile, state: Path, tmp_path: Path) -> None:
    import base64

    folder = _bundle(tmp_path / "bundle")
    planted = Secret("another-planted-secret-value", "base64 test secret")
    (folder / "data.json").write_text(base64.b64encode(planted.reveal().encode()).decode())

    with pytest.raises(SecretLeakFound, match="base64"):
        seal_bundle(folder, profile, state_dir=state)


def _software_signer(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def test_cosignature_keeps_first_signature(tmp_path: Path) -> None:
    from byok.evidence.signing import signed_data_of

    data = b"0" * 64 + b"  evidence.json\n"
    first_key, first_certificate = _software_signer("first")
    second_key, second_certificate = _software_signer("second")
    single = sign_detached(data, first_certificate, first_key)

    merged = add_cosignature(single, data, second_certificate, second_key)
    signed = signed_data_of(merged)

    assert len(signed["signer_infos"]) == 2
    # DER orders a SET OF by encoding, so the first signer may move; its bytes must not change.
    assert signed_data_of(single)["signer_infos"][0].dump() in [info.dump() for info in signed["signer_infos"]]
    assert len(signed["certificates"]) == 2


def test_sign_rejects_mismatched_certificate() -> None:
    from byok.evidence.signing import SigningError

    key, _ = _software_signer("key owner")
    _, other_certificate = _software_signer("someone else")

    with pytest.raises(SigningError, match="does not belong"):
        sign_detached(b"data", other_certificate, key)


def test_manifest_lists_nested_files_sorted(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "bundle")

    entries = parse_manifest(build_manifest(folder))

    assert list(entries) == ["evidence.json", "notes/summary.html"]


@pytest.mark.parametrize(
    "line",
    [
        b"abc  evidence.json\n",
        b"0" * 64 + b"  ../outside\n",
        b"0" * 64 + b"  /etc/passwd\n",
        b"0" * 64 + b"evidence.json\n",
    ],
)
def test_manifest_rejects_bad_lines(line: bytes) -> None:
    with pytest.raises(ManifestError):
        parse_manifest(line)


def test_verify_reports_missing_signature(tmp_path: Path) -> None:
    folder = _bundle(tmp_path / "bundle")

    result = verify_bundle(folder)

    assert not result.intact
    assert "SHA256SUMS.p7s is missing; the bundle is not signed" in result.problems
