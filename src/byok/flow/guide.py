"""The vendor integration guide as plain functions, one per step.

Every function takes explicit inputs, performs its step, reads back what it created
and returns an evidence record (``byok.evidence.StepRecord``). A function raises
``CheckFailed`` with the record attached when an observation contradicts the guide,
so the caller gets the evidence of a failure as well as of a success.

The guide's procedure, which these functions follow in order:
1. Create a CMK with external key material; it starts in PendingImport.
2. GetParametersForImport: an RSA-2048 wrapping public key and an import token valid 24 hours.
3. Import the public key into the HSM as an object with CKA_WRAP true.
4. Generate an AES-256 token key: sensitive, extractable only by wrapping.
5. Wrap it with C_WrapKey and the mechanism the WrappingAlgorithm names.
6. ImportKeyMaterial with the token and an expiry; the CMK turns Enabled.
7. Encrypt and Decrypt with the CMK.
"""

from __future__ import annotations

import base64
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from byok import keyformats
from byok.errors import ByokError, InconsistentKeyState, KmsError
from byok.evidence import PASSED, StepRecord, sha256_hex
from byok.hsm import HsmSession, ckr_name, wrap_mechanism_for
from byok.kms import ImportParameters, KmsClient

logger = logging.getLogger(__name__)

AES_256_KEY_SPEC = "Aliyun_AES_256"
IMPORT_TOKEN_LIFETIME = timedelta(hours=24)
# A token with less time left than this is not used: the wrap and upload must finish
# well before the service stops accepting it.
IMPORT_TOKEN_SAFETY_MARGIN = timedelta(minutes=10)

SECTION_CREATE_KEY = "Create a CMK with external key material"
SECTION_PARAMETERS = "Download the wrapping public key and import token"
SECTION_IMPORT_PUBLIC_KEY = "Import the wrapping public key into the HSM"
SECTION_GENERATE_KEY = "Generate the AES-256 key in the HSM"
SECTION_WRAP = "Wrap the AES key with the wrapping public key"
SECTION_IMPORT_MATERIAL = "Upload the key material"
SECTION_USE_KEY = "Use the CMK to encrypt and decrypt"


class CheckFailed(ByokError):
    """An observation contradicts the guide; ``record`` contains the evidence."""

    def __init__(self, message: str, record: StepRecord, *, fix: str | None = None) -> None:
        super().__init__(message, fix=fix)
        self.record = record


def _fail_unless_passed(record: StepRecord, what: str, fix: str | None = None) -> None:
    failures = record.failed_checks()
    if not failures:
        return
    record.finish()
    listed = "; ".join(f"{entry['check']}: expected {entry['expected']!r}, got {entry['actual']!r}" for entry in failures)
    raise CheckFailed(f"{what}: {listed}", record, fix=fix)


def parse_utc(timestamp: str) -> datetime:
    """Parse the service's ``YYYY-MM-DDThh:mm:ssZ`` timestamps."""
    return datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# -- 1. external CMK ----------------------------------------------------------------------


def create_external_key(
    kms: KmsClient, *, description: str, protection_level: str = "SOFTWARE"
) -> tuple[str, StepRecord]:
    """Create a CMK with Origin EXTERNAL and confirm it waits for key material."""
    record = StepRecord(
        "create_external_key",
        SECTION_CREATE_KEY,
        inputs={
            "Origin": "EXTERNAL",
            "KeySpec": AES_256_KEY_SPEC,
            "KeyUsage": "ENCRYPT/DECRYPT",
            "ProtectionLevel": protection_level,
            "Description": description,
        },
    )

    created = kms.create_key(
        origin="EXTERNAL", key_spec=AES_256_KEY_SPEC, protection_level=protection_level, description=description
    )
    record.observe("CreateKey RequestId", created.request_id)
    record.observe("KeyId", created.metadata.key_id)
    record.observe("Arn", created.metadata.arn)

    # Read the key back rather than trusting the CreateKey response alone.
    described = kms.describe_key(created.metadata.key_id)
    record.observe("DescribeKey RequestId", described.request_id)
    record.observe("KeyState", described.metadata.key_state)
    record.check("KeyState after CreateKey", "PendingImport", described.metadata.key_state)
    record.check("Origin", "EXTERNAL", described.metadata.origin)
    record.check("KeySpec", AES_256_KEY_SPEC, described.metadata.key_spec)
    _fail_unless_passed(record, f"CMK {created.metadata.key_id} is not waiting for external key material")
    return created.metadata.key_id, record.finish(PASSED)


# -- 2. wrapping public key and import token --------------------------------------------


def get_import_parameters(
    kms: KmsClient, key_id: str, *, wrapping_algorithm: str, wrapping_key_spec: str = "RSA_2048"
) -> tuple[ImportParameters, keyformats.WrappingPublicKey, StepRecord]:
    """Download the wrapping public key and import token, and check both."""
    record = StepRecord(
        "get_import_parameters",
        SECTION_PARAMETERS,
        inputs={"KeyId": key_id, "WrappingAlgorithm": wrapping_algorithm, "WrappingKeySpec": wrapping_key_spec},
    )

    parameters = kms.get_parameters_for_import(
        key_id, wrapping_algorithm=wrapping_algorithm, wrapping_key_spec=wrapping_key_spec
    )
    record.observe("RequestId", parameters.request_id)
    record.observe("TokenExpireTime", parameters.token_expire_time)

    public_key = keyformats.identify_wrapping_public_key(parameters.public_key)
    token_text = keyformats.load_import_token(parameters.import_token.reveal())
    record.observe("PublicKey form", public_key.form)
    record.observe("PublicKey size (bits)", public_key.key_size)
    record.observe("PublicKey SHA-256 fingerprint", public_key.fingerprint_sha256)
    record.observe("ImportToken SHA-256", sha256_hex(token_text))
    record.observe("ImportToken length", len(token_text))

    record.check("KeyId the token is bound to", key_id, parameters.key_id)
    record.check("PublicKey structure", keyformats.SUBJECT_PUBLIC_KEY_INFO, public_key.structure)
    record.check("PublicKey size (bits)", 2048, public_key.key_size)

    # The token is valid for 24 hours from issue. The response gives only the expiry, so
    # compare it with the service's own time of the response (its Date header), which
    # also holds when the service's clock differs from this machine's.
    expires = parse_utc(parameters.token_expire_time)
    if kms.last_server_time is not None:
        issued = kms.last_server_time
        record.observe("KMS time of the response", issued.strftime("%Y-%m-%dT%H:%M:%SZ"))
    else:
        issued = parse_utc(record.started[:19] + "Z")
        record.observe("KMS time of the response", "no Date header; this machine's clock was used")
    lifetime_hours = round((expires - issued).total_seconds() / 3600, 2)
    record.observe("Token lifetime (hours)", lifetime_hours)
    record.check("Token lifetime about 24 hours", True, abs(lifetime_hours - 24) <= 0.25)
    _fail_unless_passed(record, f"import parameters for {key_id} are not as the guide describes")
    return parameters, public_key, record.finish(PASSED)


# -- 3. wrapping public key in the HSM ---------------------------------------------------


def import_wrapping_public_key(
    session: HsmSession,
    public_key: keyformats.WrappingPublicKey,
    *,
    label: str,
    wrap_attribute: str = "template",
    token_object: bool = False,
) -> StepRecord:
    """Create the KMS wrapping public key on the HSM with CKA_WRAP true and read it back."""
    record = StepRecord(
        "import_wrapping_public_key",
        SECTION_IMPORT_PUBLIC_KEY,
        inputs={
            "CKA_LABEL": label,
            "PublicKey SHA-256 fingerprint": public_key.fingerprint_sha256,
            "CKA_WRAP set": "in the creation template" if wrap_attribute == "template" else "after import (C_SetAttributeValue)",
            "CKA_TOKEN": token_object,
        },
    )

    attributes = session.import_wrapping_public_key(
        public_key.key, label, wrap_attribute=wrap_attribute, token=token_object
    )
    record.observe("attributes", _printable(attributes))
    record.check("CKA_WRAP", True, attributes.get("CKA_WRAP"))
    record.check("CKA_ENCRYPT", True, attributes.get("CKA_ENCRYPT"))
    record.check("CKA_TOKEN", token_object, attributes.get("CKA_TOKEN"))
    record.check("CKA_MODULUS_BITS", 2048, attributes.get("CKA_MODULUS_BITS"))
    _fail_unless_passed(record, f"wrapping public key {label!r} on the HSM cannot wrap as required")
    return record.finish(PASSED)


# -- 4. AES-256 key in the HSM --------------------------------------------------------------


def generate_aes_key(session: HsmSession, *, label: str, key_id: bytes | None = None) -> tuple[bytes, StepRecord]:
    """Generate the AES-256 token key: sensitive, extractable only by wrapping."""
    key_id = key_id or secrets.token_bytes(16)
    record = StepRecord(
        "generate_aes_key",
        SECTION_GENERATE_KEY,
        inputs={"CKA_LABEL": label, "CKA_ID": key_id.hex(), "CKA_VALUE_LEN": 32, "CKA_TOKEN": True},
    )

    attributes = session.generate_aes_key(label, key_id, value_len=32, token=True, extractable=True)
    record.observe("attributes", _printable(attributes))
    record.observe("CKA_CHECK_VALUE", attributes.get("CKA_CHECK_VALUE") or "not available")

    expected = {
        "CKA_VALUE_LEN": 32,
        "CKA_TOKEN": True,
        "CKA_PRIVATE": True,
        "CKA_SENSITIVE": True,
        "CKA_EXTRACTABLE": True,
        "CKA_LOCAL": True,
        "CKA_ALWAYS_SENSITIVE": True,
        "CKA_NEVER_EXTRACTABLE": False,
    }
    for name, value in expected.items():
        record.check(name, value, attributes.get(name))
    mechanism = attributes.get("CKA_KEY_GEN_MECHANISM")
    if mechanism is not None:
        record.check("CKA_KEY_GEN_MECHANISM", "CKM_AES_KEY_GEN", mechanism)
    else:
        record.observe("CKA_KEY_GEN_MECHANISM", "not supported by the token")

    # The value must never leave the HSM in clear: reading CKA_VALUE must be refused.
    value_ckr = ckr_name(session.attribute_ckr(label, "CKO_SECRET_KEY", "CKA_VALUE"))
    record.observe("C_GetAttributeValue(CKA_VALUE)", value_ckr)
    record.check("CKA_VALUE readable", "CKR_ATTRIBUTE_SENSITIVE", value_ckr)
    _fail_unless_passed(record, f"AES key {label!r} does not have the attributes the guide requires")
    return key_id, record.finish(PASSED)


# -- 5. wrap ---------------------------------------------------------------------------------


def wrap_aes_key(
    session: HsmSession,
    *,
    wrapping_key_label: str,
    aes_key_label: str,
    wrapping_algorithm: str,
    key_spec: str = AES_256_KEY_SPEC,
) -> tuple[bytes, StepRecord]:
    """Wrap the AES key under the KMS public key with the mechanism the algorithm names."""
    mechanism = wrap_mechanism_for(wrapping_algorithm)
    record = StepRecord(
        "wrap_aes_key",
        SECTION_WRAP,
        inputs={
            "wrapping key CKA_LABEL": wrapping_key_label,
            "AES key CKA_LABEL": aes_key_label,
            "WrappingAlgorithm": wrapping_algorithm,
            "mechanism": mechanism.describe(),
            "mechanism parameters": mechanism.as_dict(),
        },
    )

    # Pre-flight: the material must have the length the KMS key spec needs before
    # anything is wrapped, so a 16- or 256-byte key never reaches ImportKeyMaterial.
    length = session.read_attributes(aes_key_label, "CKO_SECRET_KEY", ["CKA_VALUE_LEN"])["CKA_VALUE_LEN"]
    record.observe("CKA_VALUE_LEN", length)
    keyformats.check_key_material_length(int(length), key_spec, source=f"AES key {aes_key_label!r} (CKA_VALUE_LEN)")

    wrapped = session.wrap_key(wrapping_key_label, aes_key_label, mechanism)
    record.observe("wrapped key length (bytes)", len(wrapped))
    record.observe("wrapped key SHA-256", sha256_hex(wrapped))
    record.check("wrapped key length (bytes)", 256, len(wrapped))
    _fail_unless_passed(record, "the wrapped key does not have the length of an RSA-2048 ciphertext")
    return wrapped, record.finish(PASSED)


# -- 6. upload ---------------------------------------------------------------------------------


def import_key_material(
    kms: KmsClient,
    key_id: str,
    *,
    wrapped_key: bytes,
    parameters: ImportParameters,
    material_expire_unix: int = 0,
    round_trip_plaintext: str | None = None,
    now: datetime | None = None,
) -> StepRecord:
    """Upload the wrapped key, then prove the import from three observations.

    The import passes only when the call succeeded, DescribeKey shows Enabled and an
    Encrypt/Decrypt round trip returns the plaintext. Any disagreement is reported as an
    inconsistent key state with every observation listed.
    """
    record = StepRecord(
        "import_key_material",
        SECTION_IMPORT_MATERIAL,
        inputs={
            "KeyId": key_id,
            "WrappingAlgorithm": parameters.wrapping_algorithm,
            "KeyMaterialExpireUnix": material_expire_unix,
            "EncryptedKeyMaterial SHA-256": sha256_hex(wrapped_key),
            "ImportToken SHA-256": sha256_hex(parameters.import_token.reveal()),
        },
    )

    # Validate first: the token must belong to this key and have time left.
    if parameters.key_id != key_id:
        raise CheckFailed(
            f"the import token was issued for {parameters.key_id}, not for {key_id}",
            record.finish(),
            fix="call GetParametersForImport for the CMK you import into",
        )
    current = now or kms.server_now()
    expires = parse_utc(parameters.token_expire_time)
    if expires - current < IMPORT_TOKEN_SAFETY_MARGIN:
        raise CheckFailed(
            f"the import token for {key_id} expires at {parameters.token_expire_time}, "
            f"less than {int(IMPORT_TOKEN_SAFETY_MARGIN.total_seconds() // 60)} minutes from now",
            record.finish(),
            fix="download fresh parameters with GetParametersForImport and wrap the key again",
        )
    encoded = keyformats.encode_key_material(wrapped_key)
    before = kms.describe_key(key_id).metadata
    record.observe("KeyState before", before.key_state)

    request_id = kms.import_key_material(
        key_id,
        encrypted_key_material=encoded,
        import_token=parameters.import_token,
        key_material_expire_unix=material_expire_unix,
    )
    record.observe("ImportKeyMaterial RequestId", request_id)

    after = kms.describe_key(key_id)
    record.observe("DescribeKey RequestId", after.request_id)
    record.observe("KeyState after", after.metadata.key_state)
    record.observe("MaterialExpireTime", after.metadata.material_expire_time or "never")

    plaintext = round_trip_plaintext or f"byok round trip {secrets.token_hex(8)}"
    round_trip: dict[str, Any] = {}
    try:
        encrypted = kms.encrypt(key_id, plaintext)
        decrypted = kms.decrypt(encrypted.ciphertext_blob)
        round_trip = {
            "Encrypt RequestId": encrypted.request_id,
            "Decrypt RequestId": decrypted.request_id,
            "KeyVersionId": encrypted.key_version_id,
            "plaintext SHA-256": sha256_hex(plaintext),
            "ciphertext SHA-256": sha256_hex(encrypted.ciphertext_blob),
            "returned plaintext matches": decrypted.plaintext == plaintext,
        }
    except KmsError as error:
        round_trip = {"error": f"{error.code} (HTTP {error.http_status}, RequestId {error.request_id})"}
    record.observe("round trip", round_trip)

    observations = {
        "ImportKeyMaterial": f"succeeded (RequestId {request_id})",
        "DescribeKey KeyState": after.metadata.key_state,
        "Encrypt/Decrypt round trip": "plaintext returned" if round_trip.get("returned plaintext matches") else f"failed: {round_trip}",
    }
    state_ok = record.check("KeyState after import", "Enabled", after.metadata.key_state)
    trip_ok = record.check("round trip returns the plaintext", True, round_trip.get("returned plaintext matches", False))
    if not (state_ok and trip_ok):
        record.finish()
        listed = "; ".join(f"{name}: {value}" for name, value in observations.items())
        error = InconsistentKeyState(
            f"inconsistent key state for {key_id} after ImportKeyMaterial: {listed}",
            fix="describe the key again; if it stays inconsistent, report the RequestIds to the KMS operator",
        )
        raise CheckFailed(error.message, record, fix=error.fix) from error
    return record.finish(PASSED)


# -- 7. use -----------------------------------------------------------------------------------


def encrypt_decrypt(
    kms: KmsClient, key_id: str, *, plaintext: str, encryption_context: dict[str, str] | None = None
) -> tuple[str, StepRecord]:
    """Encrypt with the CMK and decrypt the result; return the CiphertextBlob."""
    record = StepRecord(
        "encrypt_decrypt",
        SECTION_USE_KEY,
        inputs={
            "KeyId": key_id,
            "plaintext SHA-256": sha256_hex(plaintext),
            "EncryptionContext": encryption_context or {},
        },
    )

    encrypted = kms.encrypt(key_id, plaintext, encryption_context=encryption_context)
    record.observe("Encrypt RequestId", encrypted.request_id)
    record.observe("KeyVersionId", encrypted.key_version_id)
    record.observe("ciphertext SHA-256", sha256_hex(encrypted.ciphertext_blob))
    blob = base64.b64decode(encrypted.ciphertext_blob)
    record.observe("CiphertextBlob length (bytes)", len(blob))

    decrypted = kms.decrypt(encrypted.ciphertext_blob, encryption_context=encryption_context)
    record.observe("Decrypt RequestId", decrypted.request_id)
    record.check("Encrypt KeyId", key_id, encrypted.key_id)
    record.check("Decrypt KeyId", key_id, decrypted.key_id)
    record.check("plaintext returned by Decrypt", sha256_hex(plaintext), sha256_hex(decrypted.plaintext))
    _fail_unless_passed(record, f"Encrypt/Decrypt with {key_id} did not return the plaintext")
    return encrypted.ciphertext_blob, record.finish(PASSED)


def material_expiry(hours: float, *, now: datetime | None = None) -> int:
    """Return a KeyMaterialExpireUnix value ``hours`` from now (0 means never)."""
    if hours <= 0:
        return 0
    current = now or datetime.now(UTC)
    return int((current + timedelta(hours=hours)).timestamp())


def _printable(attributes: dict[str, Any]) -> dict[str, Any]:
    """Return an attribute table with byte values shown as hex, for reports."""
    table = {}
    for name, value in attributes.items():
        if isinstance(value, bytes | bytearray):
            table[name] = bytes(value).hex()
        else:
            table[name] = value
    return table
