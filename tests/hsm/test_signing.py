"""The report signing key on SoftHSM2: creation, reuse, non-exportability and an openssl round trip."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from byok.errors import HsmError
from byok.evidence.signing import sign_detached
from byok.hsm import HsmSession
from byok.hsm.signing import report_signer

from .conftest import SoftHsmToken


@pytest.fixture
def session(softhsm_token: SoftHsmToken) -> Iterator[HsmSession]:
    with softhsm_token.hsm.session(softhsm_token.pin) as opened:
        yield opened


@pytest.fixture
def signer_label(session: HsmSession) -> Iterator[str]:
    label = f"test-report-signer-{uuid.uuid4().hex[:8]}"
    yield label
    for object_class in ("CKO_PRIVATE_KEY", "CKO_PUBLIC_KEY", "CKO_CERTIFICATE"):
        session.destroy_objects(label, object_class)


def test_signer_created_then_reused(session: HsmSession, signer_label: str) -> None:
    first = report_signer(session, signer_label)
    second = report_signer(session, signer_label)

    assert first.created is True
    assert second.created is False
    assert second.certificate == first.certificate
    assert first.certificate.subject == first.certificate.issuer


def test_signer_private_key_stays_in_token(session: HsmSession, signer_label: str) -> None:
    signer = report_signer(session, signer_label)
    attributes = session.read_attributes(
        signer_label, "CKO_PRIVATE_KEY", ["CKA_SENSITIVE", "CKA_EXTRACTABLE", "CKA_SIGN", "CKA_TOKEN", "CKA_NEVER_EXTRACTABLE"]
    )

    assert attributes == {
        "CKA_SENSITIVE": True,
        "CKA_EXTRACTABLE": False,
        "CKA_SIGN": True,
        "CKA_TOKEN": True,
        "CKA_NEVER_EXTRACTABLE": True,
    }
    with pytest.raises(TypeError):
        signer.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def test_token_signature_verifies_with_openssl(session: HsmSession, signer_label: str, tmp_path: Path) -> None:
    signer = report_signer(session, signer_label)
    content = b"0" * 64 + b"  evidence.json\n"
    (tmp_path / "SHA256SUMS").write_bytes(content)
    (tmp_path / "SHA256SUMS.p7s").write_bytes(sign_detached(content, signer.certificate, signer.key))
    (tmp_path / "signer.pem").write_bytes(signer.certificate_pem())
    command = [
        "openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "SHA256SUMS.p7s",
        "-content", "SHA256SUMS", "-CAfile", "signer.pem", "-out", "/dev/null",
    ]

    intact = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    (tmp_path / "SHA256SUMS").write_bytes(content.replace(b"evidence", b"Evidence"))
    tampered = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert intact.returncode == 0, intact.stderr
    assert tampered.returncode != 0


def test_signer_rejects_foreign_certificate(session: HsmSession, signer_label: str, tmp_path: Path) -> None:
    other_label = f"{signer_label}-other"
    try:
        other = report_signer(session, other_label)
        report_signer(session, signer_label)
        certificate_file = tmp_path / "other.pem"
        certificate_file.write_bytes(other.certificate_pem())

        with pytest.raises(HsmError, match="contains another public key"):
            report_signer(session, signer_label, certificate_file=certificate_file)
    finally:
        for object_class in ("CKO_PRIVATE_KEY", "CKO_PUBLIC_KEY", "CKO_CERTIFICATE"):
            session.destroy_objects(other_label, object_class)


def test_certificate_has_signing_key_usage(session: HsmSession, signer_label: str) -> None:
    certificate = report_signer(session, signer_label).certificate
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value

    assert usage.digital_signature is True
    assert usage.key_cert_sign is False


def test_rsa_signer_round_trips_through_openssl(session: HsmSession, signer_label: str, tmp_path: Path) -> None:
    # Tokens without EC key generation (opencryptoki's soft token) get an RSA-3072 key;
    # SoftHSM2 can make both, so the RSA path is created directly here.
    from cryptography.hazmat.primitives.asymmetric import rsa

    from byok.hsm import signing

    public_key = signing._generate_rsa_key_pair(session, signer_label, b"rsa-test")
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.key_size == signing.RSA_SIGNING_KEY_BITS
    signer = report_signer(session, signer_label)
    assert isinstance(signer.key, signing.TokenRsaKey)

    content = b"SHA256SUMS content signed with an RSA key on the token\n"
    (tmp_path / "SHA256SUMS").write_bytes(content)
    (tmp_path / "SHA256SUMS.p7s").write_bytes(sign_detached(content, signer.certificate, signer.key))
    (tmp_path / "signer.pem").write_bytes(signer.certificate_pem())
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", "SHA256SUMS.p7s", "-content", "SHA256SUMS",
         "-CAfile", "signer.pem", "-out", "/dev/null"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert verified.returncode == 0, verified.stderr
