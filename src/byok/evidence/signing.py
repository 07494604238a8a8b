"""Detached CMS signatures over a bundle's ``SHA256SUMS``.

The signature is CMS SignedData in DER, made in binary mode: without
``PKCS7Options.Binary`` cryptography converts the content to CRLF text before hashing,
and ``openssl cms -verify -binary`` then rejects the signature. A witness adds a
co-signature as a second SignerInfo in the same SignedData, so one
``openssl cms -verify`` call checks every signer against its trust anchors.
"""

from __future__ import annotations

import logging
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from byok.errors import ByokError, ConfigError

logger = logging.getLogger(__name__)

SIGNING_OPTIONS = (pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary)


class SigningError(ByokError):
    """A signature could not be made or merged."""


def sign_detached(
    data: bytes,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> bytes:
    """Return a detached CMS SignedData (DER) over ``data`` with one signer."""
    if certificate.public_key() != key.public_key():
        raise SigningError(
            f"the certificate {certificate.subject.rfc4514_string()} does not belong to the signing key",
            fix="pass the certificate issued for this key",
        )
    return (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(data)
        .add_signer(certificate, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, list(SIGNING_OPTIONS))
    )


def signed_data_of(signature_der: bytes) -> cms.SignedData:
    """Parse a DER ContentInfo and return its SignedData, raising SigningError for anything else."""
    try:
        info = cms.ContentInfo.load(signature_der)
        if info["content_type"].native != "signed_data":
            raise SigningError(
                f"the signature file contains CMS {info['content_type'].native}, not signed_data",
                fix="use the SHA256SUMS.p7s byok wrote",
            )
        signed = info["content"]
        signed.native  # noqa: B018 - parse everything now so a broken file fails here
        return signed
    except (ValueError, TypeError) as error:
        raise SigningError(f"the signature file is not DER CMS: {error}", fix="use the SHA256SUMS.p7s byok wrote") from None


def add_cosignature(
    signature_der: bytes,
    data: bytes,
    certificate: x509.Certificate,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
) -> bytes:
    """Return ``signature_der`` with one more SignerInfo over ``data`` by ``key``.

    The new SignerInfo is made by cryptography like the first one, then moved with its
    certificate and digest algorithm into the existing SignedData; the signed attributes
    are copied byte for byte, so the earlier signatures stay valid.
    """
    existing = signed_data_of(signature_der)
    if existing["encap_content_info"]["content"].native is not None:
        raise SigningError("the signature embeds its content; byok bundles use detached signatures")
    addition = signed_data_of(sign_detached(data, certificate, key))

    certificates = list(existing["certificates"]) if existing["certificates"].native else []
    known = {choice.chosen.dump() for choice in certificates}
    for choice in addition["certificates"]:
        if choice.chosen.dump() not in known:
            certificates.append(choice)
    algorithms = list(existing["digest_algorithms"])
    known_algorithms = {algorithm.dump() for algorithm in algorithms}
    for algorithm in addition["digest_algorithms"]:
        if algorithm.dump() not in known_algorithms:
            algorithms.append(algorithm)

    merged = cms.SignedData(
        {
            "version": existing["version"],
            "digest_algorithms": algorithms,
            "encap_content_info": existing["encap_content_info"],
            "certificates": certificates,
            "signer_infos": list(existing["signer_infos"]) + list(addition["signer_infos"]),
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": merged}).dump(force=False)


def load_private_key_file(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """Load a PEM private key (EC or RSA), encrypted when ``passphrase`` is given."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=passphrase)
    except FileNotFoundError:
        raise ConfigError(f"key file {path} does not exist", fix="give the path of your PEM private key") from None
    except TypeError:
        raise ConfigError(
            f"key file {path} is encrypted but no passphrase was given",
            fix="export the passphrase in the environment variable --passphrase-env names",
        ) from None
    except ValueError:
        raise ConfigError(
            f"key file {path} is not a PEM private key, or the passphrase is wrong",
            fix="check the file and the passphrase variable",
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ConfigError(
            f"key file {path} holds a {type(key).__name__}; CMS signing supports RSA and EC keys",
            fix="use an RSA or EC P-256/P-384 key",
        )
    return key


def load_certificate_file(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(path).read_bytes())
    except FileNotFoundError:
        raise ConfigError(f"certificate file {path} does not exist", fix="give the path of a PEM certificate") from None
    except ValueError:
        raise ConfigError(f"certificate file {path} is not a PEM X.509 certificate", fix="give a PEM certificate") from None
