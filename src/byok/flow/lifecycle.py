"""Key material lifecycle beyond the guide: expiry, deletion, re-import, negative controls, binding proof.

Each function takes explicit inputs, performs one step and returns a ``StepRecord``
(raising ``CheckFailed`` with the record when an observation contradicts the
expectation), like the functions of ``byok.flow.guide``.

The rules come from the Alibaba Cloud KMS documentation of ImportKeyMaterial and
DeleteKeyMaterial. The import token and wrapping public key are valid for 24 hours. A
CMK whose material expired or was deleted returns to PendingImport and rejects
cryptographic calls. Only the material a CMK was first bound to can be imported again,
which needs fresh parameters and a fresh wrap of the same key from the HSM.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import subprocess
import sys
from pathlib import Path

from byok import keyformats
from byok.errors import BlockedByEnvironment, ByokError, KmsError
from byok.evidence import INFORMATIONAL, PASSED, StepRecord, sha256_hex
from byok.flow.guide import (
    AES_256_KEY_SPEC,
    SECTION_GENERATE_KEY,
    SECTION_IMPORT_MATERIAL,
    SECTION_PARAMETERS,
    SECTION_USE_KEY,
    CheckFailed,
    _fail_unless_passed,
    _printable,
    import_key_material,
    import_wrapping_public_key,
    wrap_aes_key,
)
from byok.hsm import HsmSession
from byok.kms import ImportParameters, KmsClient

logger = logging.getLogger(__name__)

SECTION_LIFECYCLE = "Key material lifecycle"
SECTION_BINDING = "Binding proof: KMS holds the HSM's key"

# CiphertextBlob layout of the byok emulator (byok.emulator.crypto.encrypt_blob):
# key version id (36 ASCII bytes) || IV (12 bytes) || AES-GCM ciphertext || tag (16 bytes).
# Alibaba does not document the layout of the real service's blob.
KEY_VERSION_ID_BYTES = 36
GCM_IV_BYTES = 12
GCM_TAG_BYTES = 16


def advance_emulator_clock(data_dir: Path, duration: str) -> StepRecord:
    """Move the emulator's clock forward with ``byok emulator clock --advance``.

    The clock file lives in ``data_dir``, so every key, token and expiry that emulator
    holds moves with it; other emulators are unaffected.
    """
    record = StepRecord("advance_emulator_clock", SECTION_LIFECYCLE, inputs={"data dir": data_dir.name, "advance": duration})
    command = [sys.executable, "-m", "byok.cli", "emulator", "clock", "--data-dir", str(data_dir), "--advance", duration]
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    record.observe("exit status", completed.returncode)
    record.observe("output", completed.stdout.strip()[-500:])
    record.check("byok emulator clock exit status", 0, completed.returncode)
    _fail_unless_passed(record, f"could not advance the emulator clock of {data_dir} by {duration}")
    return record.finish(PASSED)


def set_emulator_fault(data_dir: Path, *, action: str, code: str | None) -> StepRecord:
    """Make the emulator answer ``action`` with error ``code`` (``byok emulator faults``); None clears it."""
    record = StepRecord(
        "set_emulator_fault", SECTION_LIFECYCLE, inputs={"data dir": data_dir.name, "action": action, "code": code or "cleared"}
    )
    command = [sys.executable, "-m", "byok.cli", "emulator", "faults", "--data-dir", str(data_dir), "--action", action]
    command += ["--code", code] if code else ["--clear"]
    completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    record.observe("exit status", completed.returncode)
    record.observe("output", completed.stdout.strip()[-500:])
    record.check("byok emulator faults exit status", 0, completed.returncode)
    _fail_unless_passed(record, f"could not set the {action} fault of the emulator in {data_dir}")
    return record.finish(PASSED)


def fetch_import_parameters(
    kms: KmsClient, key_id: str, *, wrapping_algorithm: str, wrapping_key_spec: str = "RSA_2048"
) -> tuple[ImportParameters, keyformats.WrappingPublicKey, StepRecord]:
    """Download fresh import parameters for a re-import.

    Unlike ``get_import_parameters`` this does not compare the token's expiry with the
    local clock, because lifecycle scenarios move the emulator's clock ahead of it.
    The guide's own scenario checks the 24-hour lifetime.
    """
    record = StepRecord(
        "fetch_import_parameters",
        SECTION_PARAMETERS,
        inputs={"KeyId": key_id, "WrappingAlgorithm": wrapping_algorithm, "WrappingKeySpec": wrapping_key_spec},
    )
    parameters = kms.get_parameters_for_import(
        key_id, wrapping_algorithm=wrapping_algorithm, wrapping_key_spec=wrapping_key_spec
    )
    public_key = keyformats.identify_wrapping_public_key(parameters.public_key)
    record.observe("RequestId", parameters.request_id)
    record.observe("TokenExpireTime", parameters.token_expire_time)
    record.observe("PublicKey SHA-256 fingerprint", public_key.fingerprint_sha256)
    record.observe("ImportToken SHA-256", sha256_hex(parameters.import_token.reveal()))
    record.check("KeyId the token is bound to", key_id, parameters.key_id)
    record.check("WrappingAlgorithm bound to the token", wrapping_algorithm, parameters.wrapping_algorithm)
    record.check("PublicKey size (bits)", 2048, public_key.key_size)
    _fail_unless_passed(record, f"import parameters for {key_id} are not usable")
    return parameters, public_key, record.finish(PASSED)


def require_persistent_aes_key(session: HsmSession, label: str) -> StepRecord:
    """Confirm the AES key is still a token object on the HSM, the precondition of any re-import."""
    record = StepRecord("require_persistent_aes_key", SECTION_GENERATE_KEY, inputs={"CKA_LABEL": label})
    found = session.find_objects(label, "CKO_SECRET_KEY")
    record.observe("objects found", len(found))
    if len(found) != 1:
        raise CheckFailed(
            f"the re-import needs the original AES key as a persistent HSM object; "
            f"found {len(found)} secret keys with label {label!r}",
            record.finish(),
            fix="generate AES keys with CKA_TOKEN true and keep them; a session key is gone once its session closes",
        )
    attributes = session.read_attributes(label, "CKO_SECRET_KEY", ["CKA_TOKEN", "CKA_VALUE_LEN"])
    record.observe("attributes", _printable(attributes))
    record.check("CKA_TOKEN", True, attributes.get("CKA_TOKEN"))
    _fail_unless_passed(record, f"AES key {label!r} is not a token object and cannot be re-imported later")
    return record.finish(PASSED)


def reimport_key_material(
    kms: KmsClient,
    session: HsmSession,
    key_id: str,
    *,
    aes_key_label: str,
    wrapping_key_label: str,
    wrapping_algorithm: str,
    wrapping_key_spec: str = "RSA_2048",
    wrap_attribute: str = "template",
    material_expire_unix: int = 0,
) -> list[StepRecord]:
    """Re-import the AES key ``aes_key_label`` into ``key_id``: fresh parameters, fresh wrap, upload.

    The upload's verdict is ``import_key_material``'s: the call succeeded, DescribeKey
    shows Enabled and a round trip returns the plaintext.
    """
    records = [require_persistent_aes_key(session, aes_key_label)]
    parameters, public_key, record = fetch_import_parameters(
        kms, key_id, wrapping_algorithm=wrapping_algorithm, wrapping_key_spec=wrapping_key_spec
    )
    records.append(record)
    records.append(
        import_wrapping_public_key(session, public_key, label=wrapping_key_label, wrap_attribute=wrap_attribute)
    )
    wrapped, record = wrap_aes_key(
        session, wrapping_key_label=wrapping_key_label, aes_key_label=aes_key_label, wrapping_algorithm=wrapping_algorithm
    )
    records.append(record)
    records.append(
        import_key_material(
            kms, key_id, wrapped_key=wrapped, parameters=parameters, material_expire_unix=material_expire_unix
        )
    )
    return records


def delete_key_material(kms: KmsClient, key_id: str) -> StepRecord:
    """Call DeleteKeyMaterial and confirm the CMK waits for material again."""
    record = StepRecord("delete_key_material", SECTION_LIFECYCLE, inputs={"KeyId": key_id})
    record.observe("KeyState before", kms.describe_key(key_id).metadata.key_state)
    record.observe("DeleteKeyMaterial RequestId", kms.delete_key_material(key_id))
    after = kms.describe_key(key_id)
    record.observe("DescribeKey RequestId", after.request_id)
    record.check("KeyState after DeleteKeyMaterial", "PendingImport", after.metadata.key_state)
    _fail_unless_passed(record, f"CMK {key_id} did not return to PendingImport after DeleteKeyMaterial")
    return record.finish(PASSED)


def expect_rejection(record: StepRecord, error: KmsError | None, expected_code: str) -> None:
    """Record a KMS call that must be rejected with ``expected_code``; raise CheckFailed otherwise."""
    if error is None:
        record.check(f"rejected with {expected_code}", expected_code, "accepted")
    else:
        record.observe("error", {"code": error.code, "HTTP status": error.http_status, "RequestId": error.request_id})
        record.check("error code", expected_code, error.code)
    _fail_unless_passed(record, f"the call was not rejected with {expected_code}")


def encrypt_rejected(kms: KmsClient, key_id: str, *, expected_code: str) -> StepRecord:
    """Encrypt with ``key_id`` and require the rejection ``expected_code``."""
    record = StepRecord("encrypt_rejected", SECTION_LIFECYCLE, inputs={"KeyId": key_id, "expected error": expected_code})
    rejection = None
    try:
        kms.encrypt(key_id, "byok lifecycle probe")
    except KmsError as error:
        rejection = error
    expect_rejection(record, rejection, expected_code)
    return record.finish(PASSED)


def import_rejected(
    kms: KmsClient,
    key_id: str,
    *,
    wrapped_key: bytes,
    parameters: ImportParameters,
    expected_code: str,
) -> StepRecord:
    """Upload key material that KMS must reject, and confirm the CMK's state did not change."""
    record = StepRecord(
        "import_rejected",
        SECTION_IMPORT_MATERIAL,
        inputs={
            "KeyId": key_id,
            "EncryptedKeyMaterial SHA-256": sha256_hex(wrapped_key),
            "ImportToken SHA-256": sha256_hex(parameters.import_token.reveal()),
            "TokenExpireTime": parameters.token_expire_time,
            "expected error": expected_code,
        },
    )
    before = kms.describe_key(key_id).metadata
    record.observe("KeyState before", before.key_state)
    rejection = None
    try:
        request_id = kms.import_key_material(
            key_id,
            encrypted_key_material=keyformats.encode_key_material(wrapped_key),
            import_token=parameters.import_token,
            key_material_expire_unix=0,
        )
        record.observe("ImportKeyMaterial RequestId", request_id)
    except KmsError as error:
        rejection = error
    after = kms.describe_key(key_id).metadata
    record.observe("KeyState after", after.key_state)
    record.check("KeyState unchanged", before.key_state, after.key_state)
    record.check("KeyVersion unchanged", before.primary_key_version, after.primary_key_version)
    expect_rejection(record, rejection, expected_code)
    return record.finish(PASSED)


def generate_aes_key_of_length(session: HsmSession, *, label: str, value_len: int) -> StepRecord:
    """Generate an AES token key of ``value_len`` bytes: a negative control for the length pre-flight."""
    record = StepRecord(
        "generate_aes_key_of_length", SECTION_GENERATE_KEY, inputs={"CKA_LABEL": label, "CKA_VALUE_LEN": value_len}
    )
    attributes = session.generate_aes_key(label, secrets.token_bytes(16), value_len=value_len, token=True, extractable=True)
    record.observe("attributes", _printable(attributes))
    record.check("CKA_VALUE_LEN", value_len, attributes.get("CKA_VALUE_LEN"))
    _fail_unless_passed(record, f"AES key {label!r} was not generated with CKA_VALUE_LEN {value_len}")
    return record.finish(PASSED)


def prove_binding(
    session: HsmSession,
    *,
    aes_key_label: str,
    ciphertext_blob: str,
    plaintext: str,
    encryption_context: dict[str, str] | None,
    layout_documented: bool,
) -> StepRecord:
    """Decrypt a KMS CiphertextBlob on the HSM with the AES key and compare the plaintext.

    Success proves that KMS has exactly the HSM's key. ``layout_documented`` is true for
    the byok emulator, whose blob layout is known. Against the real service the result
    is recorded as informational, never as a failure.
    """
    record = StepRecord(
        "prove_binding",
        SECTION_BINDING,
        inputs={
            "AES key CKA_LABEL": aes_key_label,
            "ciphertext SHA-256": sha256_hex(ciphertext_blob),
            "EncryptionContext": encryption_context or {},
            "blob layout": "key version id (36) || IV (12) || ciphertext || tag (16)",
        },
    )
    blob = base64.b64decode(ciphertext_blob)
    record.observe("CiphertextBlob length (bytes)", len(blob))
    aad = b""
    if encryption_context:
        aad = json.dumps(encryption_context, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    record.observe("AAD SHA-256", sha256_hex(aad) if aad else "none")
    header = KEY_VERSION_ID_BYTES + GCM_IV_BYTES
    try:
        if len(blob) < header + GCM_TAG_BYTES:
            raise ByokError(f"the CiphertextBlob is {len(blob)} bytes, shorter than the {header + GCM_TAG_BYTES} of the layout")
        decrypted = session.decrypt_aes_gcm(
            aes_key_label, blob[KEY_VERSION_ID_BYTES:header], blob[header:], aad=aad
        )
        matches = decrypted.decode("utf-8", errors="replace") == plaintext
        record.observe("HSM plaintext SHA-256", sha256_hex(decrypted))
    except BlockedByEnvironment:
        # A token without AES-GCM cannot give this proof; that is not a KMS failure.
        record.finish()
        raise
    except ByokError as error:
        matches = False
        record.observe("HSM decryption", f"failed: {error}")
    if not layout_documented:
        record.observe("verdict basis", "the real service does not document its CiphertextBlob layout")
        record.observe("plaintext returned by the HSM", matches)
        return record.finish(INFORMATIONAL)
    record.check("plaintext returned by the HSM", sha256_hex(plaintext), sha256_hex(plaintext) if matches else "no match")
    _fail_unless_passed(record, f"the HSM key {aes_key_label!r} does not decrypt the CMK's ciphertext")
    return record.finish(PASSED)


__all__ = [
    "AES_256_KEY_SPEC",
    "SECTION_BINDING",
    "SECTION_LIFECYCLE",
    "SECTION_USE_KEY",
    "advance_emulator_clock",
    "delete_key_material",
    "encrypt_rejected",
    "expect_rejection",
    "fetch_import_parameters",
    "generate_aes_key_of_length",
    "import_rejected",
    "prove_binding",
    "reimport_key_material",
    "require_persistent_aes_key",
    "set_emulator_fault",
]
