"""The report signing key: a key pair that stays in the token, and its certificate.

The key is EC P-256 where the token can generate one, else RSA-3072 (the opencryptoki 3.8.1
soft token in Debian rejects CKM_EC_KEY_PAIR_GEN with CKR_MECHANISM_INVALID).

``cryptography`` builds certificates and CMS signatures with any subclass of
``ec.EllipticCurvePrivateKey`` and calls its ``sign(data, ECDSA(SHA256()))``. ``TokenEcKey``
implements that call by hashing on the host and signing the digest on the token with raw
CKM_ECDSA, because SoftHSM2 2.6.1 lacks the hashed CKM_ECDSA_SHA256 mechanism. The
behaviour of cryptography 50 that this relies on is not a documented contract, so
tests/hsm/test_signing.py round-trips a signature through ``openssl cms -verify``.

The certificate is kept on the token as a CKO_CERTIFICATE object with the key's label, so
later runs sign with the same identity.
"""

from __future__ import annotations

import datetime
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

import PyKCS11
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from byok.errors import ConfigError, HsmError
from byok.hsm.ckr import translate_error
from byok.hsm.session import HsmSession

logger = logging.getLogger(__name__)

# DER of the OID 1.2.840.10045.3.1.7 (prime256v1), the CKA_EC_PARAMS of a P-256 key.
P256_EC_PARAMS = bytes.fromhex("06082a8648ce3d030107")
P256_COORDINATE_BYTES = 32
CERTIFICATE_VALIDITY = datetime.timedelta(days=3650)


def _hash_algorithm(algorithm: hashes.HashAlgorithm | Prehashed) -> hashes.HashAlgorithm:
    return algorithm._algorithm if isinstance(algorithm, Prehashed) else algorithm


class _TokenPrivateKey:
    """Base of the token signing keys: the session and label, and export methods that raise."""

    def __init__(self, session: HsmSession, label: str, public_key) -> None:
        self._hsm_session = session
        self._label = label
        self._public_key = public_key

    @property
    def label(self) -> str:
        return self._label

    def public_key(self):
        return self._public_key

    def private_numbers(self):
        raise TypeError(f"the private key {self._label!r} stays in the token and cannot be exported")

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise TypeError(f"the private key {self._label!r} stays in the token and cannot be exported")

    def __copy__(self):
        return self

    def __deepcopy__(self, memo: dict):
        return self


class TokenEcKey(_TokenPrivateKey, ec.EllipticCurvePrivateKey):
    """A P-256 private key on the token that signs through C_Sign(CKM_ECDSA).

    Valid only while the session it was found in is open. Every method that would
    export the key raises, because the key is sensitive and never extractable.
    """

    @property
    def curve(self) -> ec.EllipticCurve:
        return ec.SECP256R1()

    @property
    def key_size(self) -> int:
        return 256

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """Sign ``data`` with ECDSA on the token and return the DER signature cryptography expects."""
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise TypeError(f"only ECDSA is supported, not {type(signature_algorithm).__name__}")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            digest = data
        else:
            hasher = hashes.Hash(_hash_algorithm(algorithm))
            hasher.update(data)
            digest = hasher.finalize()
        raw = self._hsm_session._session
        handle = self._hsm_session._find_one(self._label, PyKCS11.CKO_PRIVATE_KEY, "report signing key")
        try:
            signature = bytes(raw.sign(handle, digest, PyKCS11.Mechanism(PyKCS11.CKM_ECDSA, None)))
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(error, operation="C_Sign(CKM_ECDSA)", labels=[self._label]) from None
        if len(signature) != 2 * P256_COORDINATE_BYTES:
            raise HsmError(
                f"C_Sign(CKM_ECDSA) with {self._label!r} returned {len(signature)} bytes, "
                f"expected r||s of {2 * P256_COORDINATE_BYTES} bytes",
                operation="C_Sign",
                fix="use a P-256 key as the report signing key",
            )
        r = int.from_bytes(signature[:P256_COORDINATE_BYTES], "big")
        s = int.from_bytes(signature[P256_COORDINATE_BYTES:], "big")
        return encode_dss_signature(r, s)

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise TypeError("the report signing key only signs")


# DER DigestInfo prefixes of EMSA-PKCS1-v1_5 (RFC 8017, section 9.2, note 1): C_Sign with
# CKM_RSA_PKCS pads and signs exactly the DigestInfo it is given.
_DIGEST_INFO_PREFIXES = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
RSA_SIGNING_KEY_BITS = 3072


class TokenRsaKey(_TokenPrivateKey, rsa.RSAPrivateKey):
    """An RSA private key on the token that signs through C_Sign(CKM_RSA_PKCS) with a DigestInfo.

    Valid only while the session it was found in is open; export methods raise.
    """

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def sign(
        self,
        data: bytes,
        padding_scheme: padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | Prehashed,
    ) -> bytes:
        """Sign ``data`` with RSASSA-PKCS1-v1_5 on the token."""
        if not isinstance(padding_scheme, padding.PKCS1v15):
            raise TypeError(f"only PKCS#1 v1.5 signatures are supported, not {type(padding_scheme).__name__}")
        hash_algorithm = _hash_algorithm(algorithm)
        prefix = _DIGEST_INFO_PREFIXES.get(hash_algorithm.name)
        if prefix is None:
            raise TypeError(f"hash {hash_algorithm.name} is not supported for the report signature")
        if isinstance(algorithm, Prehashed):
            digest = data
        else:
            hasher = hashes.Hash(hash_algorithm)
            hasher.update(data)
            digest = hasher.finalize()
        raw = self._hsm_session._session
        handle = self._hsm_session._find_one(self._label, PyKCS11.CKO_PRIVATE_KEY, "report signing key")
        try:
            return bytes(raw.sign(handle, prefix + digest, PyKCS11.Mechanism(PyKCS11.CKM_RSA_PKCS, None)))
        except PyKCS11.PyKCS11Error as error:
            raise translate_error(error, operation="C_Sign(CKM_RSA_PKCS)", labels=[self._label]) from None

    def decrypt(self, ciphertext: bytes, padding_scheme: padding.AsymmetricPadding) -> bytes:
        raise TypeError("the report signing key only signs")


@dataclass(frozen=True)
class ReportSigner:
    """The report signing key found or created on the token, with its certificate."""

    key: TokenEcKey | TokenRsaKey
    certificate: x509.Certificate
    created: bool
    key_id_hex: str

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _public_key_of(
    session: HsmSession, label: str
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey | None:
    handles = session._find(label, PyKCS11.CKO_PUBLIC_KEY)
    if not handles:
        return None
    raw = session._session
    key_type = raw.getAttributeValue(handles[0], [PyKCS11.CKA_KEY_TYPE])[0]
    if key_type == PyKCS11.CKK_RSA:
        modulus, exponent = raw.getAttributeValue(
            handles[0], [PyKCS11.CKA_MODULUS, PyKCS11.CKA_PUBLIC_EXPONENT], allAsBinary=True
        )
        return rsa.RSAPublicNumbers(
            int.from_bytes(bytes(exponent), "big"), int.from_bytes(bytes(modulus), "big")
        ).public_key()
    point = bytes(raw.getAttributeValue(handles[0], [PyKCS11.CKA_EC_POINT], allAsBinary=True)[0])
    # PKCS#11 2.40 returns CKA_EC_POINT as a DER OCTET STRING; some modules give the raw point.
    if len(point) == 2 * P256_COORDINATE_BYTES + 3 and point[0] == 0x04 and point[1] == 0x41:
        point = point[2:]
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def _generate_key_pair(
    session: HsmSession, label: str, key_id: bytes
) -> ec.EllipticCurvePublicKey | rsa.RSAPublicKey:
    """Generate an EC P-256 key pair, or RSA-3072 where the token has no EC key generation."""
    try:
        return _generate_ec_key_pair(session, label, key_id)
    except HsmError as error:
        if error.ckr_name != "CKR_MECHANISM_INVALID":
            raise
        logger.info("The token cannot generate EC keys (%s); generating an RSA-%d report signing key", error.ckr_name, RSA_SIGNING_KEY_BITS)
    return _generate_rsa_key_pair(session, label, key_id)


def _generate_rsa_key_pair(session: HsmSession, label: str, key_id: bytes) -> rsa.RSAPublicKey:
    public_template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_RSA),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_PRIVATE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_VERIFY, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_ENCRYPT, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_WRAP, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_MODULUS_BITS, RSA_SIGNING_KEY_BITS),
        (PyKCS11.CKA_PUBLIC_EXPONENT, (0x01, 0x00, 0x01)),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, key_id),
    ]
    private_template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_RSA),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_PRIVATE, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_SIGN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_DECRYPT, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_UNWRAP, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, key_id),
    ]
    try:
        session._session.generateKeyPair(
            public_template, private_template, PyKCS11.Mechanism(PyKCS11.CKM_RSA_PKCS_KEY_PAIR_GEN, None)
        )
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_GenerateKeyPair(CKM_RSA_PKCS_KEY_PAIR_GEN)", labels=[label]) from None
    public_key = _public_key_of(session, label)
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise HsmError(
            f"the token created the report signing key {label!r} but its RSA public key is not visible",
            operation="C_FindObjects",
            fix="check that the token keeps CKA_TOKEN public keys",
        )
    logger.info("Generated the report signing key pair %r (RSA-%d) on the token", label, RSA_SIGNING_KEY_BITS)
    return public_key


def _generate_ec_key_pair(session: HsmSession, label: str, key_id: bytes) -> ec.EllipticCurvePublicKey:
    public_template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_PRIVATE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_VERIFY, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, key_id),
        (PyKCS11.CKA_EC_PARAMS, P256_EC_PARAMS),
    ]
    private_template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY),
        (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_PRIVATE, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_SIGN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_DECRYPT, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_DERIVE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, key_id),
    ]
    raw = session._session
    try:
        raw.generateKeyPair(
            public_template, private_template, PyKCS11.Mechanism(PyKCS11.CKM_EC_KEY_PAIR_GEN, None)
        )
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN)", labels=[label]) from None
    public_key = _public_key_of(session, label)
    if public_key is None:
        raise HsmError(
            f"the token created the report signing key {label!r} but its public key is not visible",
            operation="C_FindObjects",
            fix="check that the token keeps CKA_TOKEN public keys",
        )
    logger.info("Generated the report signing key pair %r (EC P-256) on the token", label)
    return public_key


def _self_signed_certificate(key: TokenEcKey | TokenRsaKey, common_name: str) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "byok evidence bundles"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # openssl cms -verify checks the S/MIME purpose by default; emailProtection satisfies it.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _stored_certificate(session: HsmSession, label: str) -> x509.Certificate | None:
    handles = session._find(label, PyKCS11.CKO_CERTIFICATE)
    if not handles:
        return None
    raw = session._session
    der = bytes(raw.getAttributeValue(handles[0], [PyKCS11.CKA_VALUE], allAsBinary=True)[0])
    return x509.load_der_x509_certificate(der)


def _store_certificate(session: HsmSession, label: str, key_id: bytes, certificate: x509.Certificate) -> None:
    template = [
        (PyKCS11.CKA_CLASS, PyKCS11.CKO_CERTIFICATE),
        (PyKCS11.CKA_CERTIFICATE_TYPE, PyKCS11.CKC_X_509),
        (PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE),
        (PyKCS11.CKA_PRIVATE, PyKCS11.CK_FALSE),
        (PyKCS11.CKA_LABEL, label),
        (PyKCS11.CKA_ID, key_id),
        (PyKCS11.CKA_SUBJECT, certificate.subject.public_bytes()),
        (PyKCS11.CKA_VALUE, certificate.public_bytes(serialization.Encoding.DER)),
    ]
    try:
        session._session.createObject(template)
    except PyKCS11.PyKCS11Error as error:
        raise translate_error(error, operation="C_CreateObject(CKO_CERTIFICATE)", labels=[label]) from None


def _key_id_of(session: HsmSession, label: str) -> bytes:
    handle = session._find_one(label, PyKCS11.CKO_PRIVATE_KEY, "report signing key")
    value = session._session.getAttributeValue(handle, [PyKCS11.CKA_ID], allAsBinary=True)[0]
    return bytes(value)


def report_signer(
    session: HsmSession,
    label: str,
    *,
    certificate_file: Path | None = None,
    common_name: str | None = None,
) -> ReportSigner:
    """Find the report signing key ``label`` on the token, creating it on first use.

    With ``certificate_file`` the key must already exist and the file's certificate must
    hold its public key (an organisation's CA issued it). Without it, a certificate stored
    on the token under the same label is used, else a self-signed one is made and stored.
    """
    if not label:
        raise ConfigError("the report signer label is empty", fix="set [report] signer_label in the profile")
    created = False
    public_key = _public_key_of(session, label)
    has_private = bool(session._find(label, PyKCS11.CKO_PRIVATE_KEY))
    if public_key is None or not has_private:
        if certificate_file is not None:
            raise HsmError(
                f"the report signing key {label!r} named with certificate {certificate_file} is not on the token",
                operation="C_FindObjects",
                fix="generate the key pair under that label, or remove [report] signer_certificate to let byok create one",
            )
        if has_private or public_key is not None:
            raise HsmError(
                f"the token contains only half of the report signing key pair {label!r}",
                operation="C_FindObjects",
                fix=f"remove the remaining object labelled {label!r} or choose another [report] signer_label",
            )
        public_key = _generate_key_pair(session, label, secrets.token_bytes(8))
        created = True
    if isinstance(public_key, rsa.RSAPublicKey):
        key: TokenEcKey | TokenRsaKey = TokenRsaKey(session, label, public_key)
    else:
        key = TokenEcKey(session, label, public_key)
    key_id = _key_id_of(session, label)

    if certificate_file is not None:
        try:
            certificate = x509.load_pem_x509_certificate(Path(certificate_file).read_bytes())
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"report signer certificate {certificate_file} cannot be read as PEM: {error}",
                fix="give the path of the PEM certificate issued for the report signing key",
            ) from None
    else:
        certificate = _stored_certificate(session, label)
        if certificate is None:
            certificate = _self_signed_certificate(key, common_name or f"byok report signer {label}")
            _store_certificate(session, label, key_id, certificate)
            logger.info("Stored a self-signed certificate for %r on the token", label)

    if certificate.public_key() != public_key:
        raise HsmError(
            f"the certificate for the report signing key {label!r} contains another public key",
            operation="certificate check",
            fix="use the certificate issued for this key, or delete the stale certificate object from the token",
        )
    return ReportSigner(key=key, certificate=certificate, created=created, key_id_hex=key_id.hex())


__all__ = ["ReportSigner", "TokenEcKey", "TokenRsaKey", "report_signer"]
