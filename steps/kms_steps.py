"""Steps that act on KMS: the CMK, the import parameters, the upload and the use of the key."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from pytest_bdd import given, parsers, then, when

from byok import flow
from byok.errors import KmsError
from byok.evidence import StepRecord
from steps.context import Ciphertext, Cmk, ImportBundle, Upload, WrappedKey


def run_step(evidence: Callable[[StepRecord], StepRecord], call: Callable, *args, **kwargs):
    """Call a flow function; attach its evidence whether it passed or failed."""
    try:
        result = call(*args, **kwargs)
    except flow.CheckFailed as failure:
        evidence(failure.record)
        raise
    records = [item for item in (result if isinstance(result, tuple) else (result,)) if isinstance(item, StepRecord)]
    for record in records:
        evidence(record)
    return result


def wrap_new_aes_key(evidence, hsm_session, run_objects, profile, public_key) -> tuple[str, bytes]:
    """Put the KMS public key on the HSM, generate a new AES key and wrap it; return its label and the blob.

    This is guide steps 3 to 5 as the profile configures them, shared by every step that
    needs freshly wrapped material.
    """
    wrapping_label = run_objects.label("wrap")
    run_objects.created_object(wrapping_label, "CKO_PUBLIC_KEY")
    run_step(
        evidence,
        flow.import_wrapping_public_key,
        hsm_session,
        public_key,
        label=wrapping_label,
        wrap_attribute=profile.hsm.wrap_attribute,
        token_object=profile.hsm.public_key_token_object,
    )

    aes_label = run_objects.label("aes")
    run_objects.created_object(aes_label, "CKO_SECRET_KEY")
    run_step(evidence, flow.generate_aes_key, hsm_session, label=aes_label)

    wrapped, _ = run_step(
        evidence,
        flow.wrap_aes_key,
        hsm_session,
        wrapping_key_label=wrapping_label,
        aes_key_label=aes_label,
        wrapping_algorithm=profile.kms.wrapping_algorithm,
    )
    return aes_label, wrapped


# -- the CMK -------------------------------------------------------------------------------


@when("I create a CMK with key material origin EXTERNAL", target_fixture="cmk")
@given("a CMK with external key material", target_fixture="cmk")
def external_cmk(kms, run_id, evidence) -> Cmk:
    key_id, record = run_step(evidence, flow.create_external_key, kms, description=f"byok certify run {run_id}")
    return Cmk(key_id=key_id, records=[record])


@then(parsers.parse('the CMK is in state "{state}"'))
def cmk_state(kms, cmk: Cmk, state: str) -> None:
    described = kms.describe_key(cmk.key_id)
    assert described.metadata.key_state == state, (
        f"DescribeKey {cmk.key_id} (RequestId {described.request_id}) shows KeyState "
        f"{described.metadata.key_state}, expected {state}"
    )


@then(parsers.parse('the CMK has origin "{origin}" and key spec "{key_spec}"'))
def cmk_origin_and_spec(kms, cmk: Cmk, origin: str, key_spec: str) -> None:
    metadata = kms.describe_key(cmk.key_id).metadata
    assert metadata.origin == origin, f"Origin is {metadata.origin}, expected {origin}"
    assert metadata.key_spec == key_spec, f"KeySpec is {metadata.key_spec}, expected {key_spec}"


# -- import parameters ---------------------------------------------------------------------------


@when("I download the import parameters for the profile's wrapping algorithm", target_fixture="import_parameters")
@given("the import parameters for the profile's wrapping algorithm", target_fixture="import_parameters")
def import_parameters_for_profile(kms, profile, cmk: Cmk, evidence, capability) -> ImportBundle:
    # Raises BlockedByEnvironment before GetParametersForImport when the token cannot do the wrap.
    capability.require()
    algorithm = profile.kms.wrapping_algorithm
    parameters, public_key, record = run_step(
        evidence,
        flow.get_import_parameters,
        kms,
        cmk.key_id,
        wrapping_algorithm=algorithm,
        wrapping_key_spec=profile.kms.wrapping_key_spec,
    )
    return ImportBundle(cmk.key_id, algorithm, parameters, public_key, record)


@then("the wrapping public key is an RSA-2048 SubjectPublicKeyInfo with exponent 65537")
def public_key_is_spki(import_parameters: ImportBundle) -> None:
    public_key = import_parameters.public_key
    assert public_key.form == "base64 SubjectPublicKeyInfo", f"PublicKey arrived as {public_key.form}"
    assert public_key.key_size == 2048, f"PublicKey is {public_key.key_size}-bit"
    assert public_key.key.public_numbers().e == 65537, f"PublicKey exponent is {public_key.key.public_numbers().e}"


@then("the import token expires 24 hours after it was issued")
def token_expires_in_24_hours(import_parameters: ImportBundle) -> None:
    lifetime = import_parameters.record.observations["Token lifetime (hours)"]
    assert abs(lifetime - 24) <= 0.25, f"TokenExpireTime is {lifetime} hours after the request, expected 24"


@then("the import token is bound to the CMK")
def token_bound_to_cmk(import_parameters: ImportBundle, cmk: Cmk) -> None:
    assert import_parameters.parameters.key_id == cmk.key_id, (
        f"GetParametersForImport returned KeyId {import_parameters.parameters.key_id}, expected {cmk.key_id}"
    )


# -- upload -------------------------------------------------------------------------------------


@when(parsers.parse("I upload the wrapped key material with an expiry {days:d} days from now"), target_fixture="upload")
def upload_key_material(kms, cmk: Cmk, import_parameters: ImportBundle, wrapped_key: WrappedKey, run_objects, evidence, days: int) -> Upload:
    expire_unix = flow.material_expiry(days * 24, now=kms.server_now())
    record = run_step(
        evidence,
        flow.import_key_material,
        kms,
        cmk.key_id,
        wrapped_key=wrapped_key.blob,
        parameters=import_parameters.parameters,
        material_expire_unix=expire_unix,
    )
    # The AES key in the HSM is now the only copy of this CMK's material: keep it.
    run_objects.keep(wrapped_key.aes_key_label)
    cmk.aes_key_label = wrapped_key.aes_key_label
    return Upload(cmk.key_id, expire_unix, record)


@then("the CMK reports the material expiry that was requested")
def material_expiry_reported(kms, upload: Upload) -> None:
    reported = kms.describe_key(upload.key_id).metadata.material_expire_time
    assert reported, "DescribeKey shows no MaterialExpireTime although an expiry was requested"
    reported_unix = int(flow.parse_utc(reported).timestamp())
    assert reported_unix == upload.material_expire_unix, (
        f"MaterialExpireTime {reported} is not the requested "
        f"{datetime.fromtimestamp(upload.material_expire_unix, UTC):%Y-%m-%dT%H:%M:%SZ}"
    )


@then("an Encrypt and Decrypt round trip with the CMK returns the plaintext")
def round_trip_after_upload(kms, cmk: Cmk, evidence) -> None:
    run_step(evidence, flow.encrypt_decrypt, kms, cmk.key_id, plaintext="byok round trip after import")


# -- using the CMK -------------------------------------------------------------------------------


@given("a CMK with imported key material from the HSM", target_fixture="cmk")
def cmk_with_imported_material(kms, profile, hsm_session, run_objects, run_id, evidence, capability) -> Cmk:
    """Run the guide's steps 1 to 6 and return the enabled CMK."""
    # Raises BlockedByEnvironment before CreateKey when the token cannot do the wrap.
    capability.require()
    key_id, record = run_step(evidence, flow.create_external_key, kms, description=f"byok certify run {run_id}")
    parameters, public_key, _ = run_step(
        evidence,
        flow.get_import_parameters,
        kms,
        key_id,
        wrapping_algorithm=profile.kms.wrapping_algorithm,
        wrapping_key_spec=profile.kms.wrapping_key_spec,
    )
    aes_label, wrapped = wrap_new_aes_key(evidence, hsm_session, run_objects, profile, public_key)
    run_step(
        evidence,
        flow.import_key_material,
        kms,
        key_id,
        wrapped_key=wrapped,
        parameters=parameters,
        material_expire_unix=0,
    )
    run_objects.keep(aes_label)
    return Cmk(key_id=key_id, records=[record], aes_key_label=aes_label)


@when(parsers.parse('I encrypt "{plaintext}" with the CMK'), target_fixture="ciphertext")
def encrypt_with_cmk(kms, cmk: Cmk, plaintext: str) -> Ciphertext:
    result = kms.encrypt(cmk.key_id, plaintext)
    return Ciphertext(result.key_id, result.key_version_id, result.ciphertext_blob)


@when(parsers.parse('I encrypt "{plaintext}" with the CMK and the encryption context'), target_fixture="ciphertext")
def encrypt_with_context(kms, cmk: Cmk, plaintext: str, datatable) -> Ciphertext:
    header, *rows = datatable
    assert header == ["key", "value"], f"the table needs the columns key and value, not {header}"
    context = {key: value for key, value in rows}
    result = kms.encrypt(cmk.key_id, plaintext, encryption_context=context)
    return Ciphertext(result.key_id, result.key_version_id, result.ciphertext_blob, context)


@then(parsers.parse('decrypting the ciphertext returns "{plaintext}"'))
def decrypt_returns(kms, ciphertext: Ciphertext, plaintext: str) -> None:
    result = kms.decrypt(ciphertext.blob)
    assert result.plaintext == plaintext, f"Decrypt (RequestId {result.request_id}) returned other data"
    assert result.key_id == ciphertext.key_id, f"Decrypt used key {result.key_id}, Encrypt used {ciphertext.key_id}"


@then(parsers.parse('decrypting the ciphertext with the same encryption context returns "{plaintext}"'))
def decrypt_with_context_returns(kms, ciphertext: Ciphertext, plaintext: str) -> None:
    reordered = dict(reversed(list((ciphertext.encryption_context or {}).items())))
    result = kms.decrypt(ciphertext.blob, encryption_context=reordered)
    assert result.plaintext == plaintext, f"Decrypt (RequestId {result.request_id}) returned other data"


@then("decrypting the ciphertext without the encryption context is rejected")
def decrypt_without_context_rejected(kms, ciphertext: Ciphertext) -> None:
    with pytest.raises(KmsError) as rejected:
        kms.decrypt(ciphertext.blob)
    assert 400 <= (rejected.value.http_status or 0) < 500, f"expected a 4xx rejection, got {rejected.value}"


@then("the ciphertext names the CMK's key version")
def ciphertext_names_key_version(kms, cmk: Cmk, ciphertext: Ciphertext, profile) -> None:
    primary = kms.describe_key(cmk.key_id).metadata.primary_key_version
    assert ciphertext.key_version_id == primary, (
        f"Encrypt returned KeyVersionId {ciphertext.key_version_id}, DescribeKey shows {primary}"
    )
    if profile.kms.uses_emulator:
        # The blob layout (36-byte key version id, 12-byte IV, GCM ciphertext and tag) is
        # what the emulator produces; the real service does not document it.
        header = base64.b64decode(ciphertext.blob)[:36].decode("ascii", errors="replace")
        assert header == ciphertext.key_version_id, f"the blob starts with {header!r}"


def _context_json(context: dict[str, str]) -> str:
    return json.dumps(context, sort_keys=True, separators=(",", ":"))
