"""Steps for key material lifecycle, preconditions, binding proof and per-algorithm parameters.

Lifecycle scenarios move the emulator's clock, and the clock of an emulator data
directory moves every key and token in it, persistently. They therefore run against a
second emulator whose data directory belongs to this run alone,
``<state>/emulator-lifecycle/<run-id>``, which is removed at the end of the session.
The clock moves cannot affect the guide scenarios' tokens, the next run's tokens, or
the guide's check that compares a fresh token's expiry with the local clock. Each
lifecycle scenario fetches its import parameters after any clock move it makes, so the
order of the scenarios does not matter either.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pytest_bdd import given, parsers, then, when

from byok import flow
from byok.errors import KeyMaterialLengthError
from byok.evidence import INFORMATIONAL, PASSED, StepRecord
from byok.flow import lifecycle
from byok.secrets import load_secret
from steps.context import Ciphertext, Cmk, HsmObject, ImportBundle, WrappedKey
from steps.kms_steps import run_step, wrap_new_aes_key


@dataclass
class LifecycleCmk:
    key_id: str
    aes_key_label: str | None = None
    records: list[StepRecord] = field(default_factory=list, repr=False)


@dataclass
class PendingUpload:
    key_id: str
    parameters: object = field(repr=False)
    wrapped: bytes = field(repr=False)


@dataclass
class PreflightOutcome:
    error_message: str
    import_calls_before: int
    import_calls_after: int


@pytest.fixture(scope="session")
def lifecycle_emulator(profile, byok_state_dir: Path, run_id: str) -> Iterator[dict]:
    """Start a second KMS emulator, with a data directory of this run only, for clock moves."""
    if not profile.kms.uses_emulator:
        pytest.skip("lifecycle scenarios that move the clock need the byok KMS emulator")
    from byok.emulator.process import EmulatorProcess

    data_dir = byok_state_dir / "emulator-lifecycle" / run_id
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        with EmulatorProcess(
            data_dir=data_dir,
            secret_file=byok_state_dir / "secrets" / "emulator-lifecycle-root-access-key-secret",
            region=profile.kms.region,
        ) as process:
            yield process.ready
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def lifecycle_kms(lifecycle_emulator: dict):
    from byok.kms import KmsClient

    secret = load_secret(
        "lifecycle emulator root AccessKey secret", env=None, file=Path(lifecycle_emulator["access_key_secret_file"])
    )
    return KmsClient(
        endpoint=lifecycle_emulator["endpoint"],
        region=lifecycle_emulator["region"],
        access_key_id=lifecycle_emulator["access_key_id"],
        access_key_secret=secret,
    )


def _import_calls(kms) -> int:
    return sum(1 for call in kms.calls if call.action == "ImportKeyMaterial")


# -- lifecycle (09) -------------------------------------------------------------------------


def _provision(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability, *, hours: float, upload: bool):
    # A token that cannot wrap as the profile requests makes this scenario blocked, not failed.
    capability.require()
    key_id, _ = run_step(evidence, flow.create_external_key, lifecycle_kms, description=f"byok lifecycle run {run_id}")
    parameters, public_key, _ = run_step(
        evidence,
        lifecycle.fetch_import_parameters,
        lifecycle_kms,
        key_id,
        wrapping_algorithm=profile.kms.wrapping_algorithm,
        wrapping_key_spec=profile.kms.wrapping_key_spec,
    )
    aes_label, wrapped = wrap_new_aes_key(evidence, hsm_session, run_objects, profile, public_key)
    if upload:
        run_step(
            evidence,
            flow.import_key_material,
            lifecycle_kms,
            key_id,
            wrapped_key=wrapped,
            parameters=parameters,
            material_expire_unix=flow.material_expiry(hours, now=lifecycle_kms.server_now()) if hours else 0,
        )
    return LifecycleCmk(key_id, aes_label), PendingUpload(key_id, parameters, wrapped)


@given(
    parsers.re(r"a CMK on the lifecycle emulator with HSM key material that expires in (?P<hours>\d+) hours?"),
    converters={"hours": int},
    target_fixture="lifecycle_cmk",
)
def lifecycle_cmk_expiring(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability, hours: int) -> LifecycleCmk:
    cmk, _ = _provision(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability, hours=hours, upload=True)
    return cmk


@given("a CMK on the lifecycle emulator with HSM key material that never expires", target_fixture="lifecycle_cmk")
def lifecycle_cmk_permanent(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability) -> LifecycleCmk:
    cmk, _ = _provision(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability, hours=0, upload=True)
    return cmk


@given("a CMK on the lifecycle emulator with a wrapped AES key ready to upload", target_fixture="pending_upload")
def lifecycle_pending_upload(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability) -> PendingUpload:
    _, pending = _provision(lifecycle_kms, profile, hsm_session, run_objects, run_id, evidence, capability, hours=0, upload=False)
    return pending


@given("a ciphertext made with the lifecycle CMK", target_fixture="ciphertext")
def lifecycle_ciphertext(lifecycle_kms, lifecycle_cmk: LifecycleCmk) -> Ciphertext:
    result = lifecycle_kms.encrypt(lifecycle_cmk.key_id, "made before the material was deleted")
    return Ciphertext(result.key_id, result.key_version_id, result.ciphertext_blob)


@when(parsers.parse("the lifecycle emulator's clock moves forward {duration}"))
def lifecycle_clock_moves(lifecycle_emulator: dict, evidence, duration: str) -> None:
    run_step(evidence, lifecycle.advance_emulator_clock, Path(lifecycle_emulator["data_dir"]), duration)


@when("I delete the key material of the lifecycle CMK")
def lifecycle_delete_material(lifecycle_kms, lifecycle_cmk: LifecycleCmk, evidence) -> None:
    run_step(evidence, lifecycle.delete_key_material, lifecycle_kms, lifecycle_cmk.key_id)


@when("I re-import the same AES key from the HSM with fresh import parameters")
def lifecycle_reimport(lifecycle_kms, profile, hsm_session, lifecycle_cmk: LifecycleCmk, run_objects, evidence) -> None:
    wrapping_label = run_objects.label("wrap")
    run_objects.created_object(wrapping_label, "CKO_PUBLIC_KEY")
    run_step(
        evidence,
        lifecycle.reimport_key_material,
        lifecycle_kms,
        hsm_session,
        lifecycle_cmk.key_id,
        aes_key_label=lifecycle_cmk.aes_key_label,
        wrapping_key_label=wrapping_label,
        wrapping_algorithm=profile.kms.wrapping_algorithm,
        wrapping_key_spec=profile.kms.wrapping_key_spec,
        wrap_attribute=profile.hsm.wrap_attribute,
    )


@then("uploading a different AES key from the HSM is rejected with InvalidKeyMaterial")
def lifecycle_other_material_rejected(lifecycle_kms, profile, hsm_session, lifecycle_cmk: LifecycleCmk, run_objects, evidence) -> None:
    parameters, public_key, _ = run_step(
        evidence,
        lifecycle.fetch_import_parameters,
        lifecycle_kms,
        lifecycle_cmk.key_id,
        wrapping_algorithm=profile.kms.wrapping_algorithm,
        wrapping_key_spec=profile.kms.wrapping_key_spec,
    )
    # A second AES key from the HSM: material the CMK was never bound to.
    _, wrapped = wrap_new_aes_key(evidence, hsm_session, run_objects, profile, public_key)
    run_step(
        evidence,
        lifecycle.import_rejected,
        lifecycle_kms,
        lifecycle_cmk.key_id,
        wrapped_key=wrapped,
        parameters=parameters,
        expected_code="InvalidKeyMaterial",
    )


@when("I upload the wrapped key material with the import token issued before", target_fixture="late_upload")
def lifecycle_late_upload(lifecycle_kms, pending_upload: PendingUpload, evidence) -> StepRecord:
    return run_step(
        evidence,
        lifecycle.import_rejected,
        lifecycle_kms,
        pending_upload.key_id,
        wrapped_key=pending_upload.wrapped,
        parameters=pending_upload.parameters,
        expected_code="ExpiredImportToken",
    )


@then("the upload was rejected with ExpiredImportToken")
def lifecycle_late_upload_rejected(late_upload: StepRecord) -> None:
    codes = [entry["actual"] for entry in late_upload.checks if entry["check"] == "error code"]
    assert codes == ["ExpiredImportToken"], f"ImportKeyMaterial returned {codes or 'no error'}"


@given(parsers.parse("the lifecycle emulator answers every {action} with {code}"))
def lifecycle_fault(lifecycle_emulator: dict, request: pytest.FixtureRequest, evidence, action: str, code: str) -> None:
    data_dir = Path(lifecycle_emulator["data_dir"])
    # Cleared after the scenario, passed or failed, so no other scenario sees the fault.
    request.addfinalizer(lambda: lifecycle.set_emulator_fault(data_dir, action=action, code=None))
    run_step(evidence, lifecycle.set_emulator_fault, data_dir, action=action, code=code)


@when("I upload the wrapped key material and byok checks the import", target_fixture="checked_import")
def lifecycle_checked_import(lifecycle_kms, pending_upload: PendingUpload, evidence) -> str:
    try:
        run_step(
            evidence,
            flow.import_key_material,
            lifecycle_kms,
            pending_upload.key_id,
            wrapped_key=pending_upload.wrapped,
            parameters=pending_upload.parameters,
        )
    except flow.CheckFailed as failure:
        return failure.message
    return ""


@then("the import is reported as an inconsistent key state listing every observation")
def lifecycle_inconsistent_reported(checked_import: str) -> None:
    assert checked_import, "byok accepted the import although the round trip failed"
    assert "inconsistent key state" in checked_import, checked_import
    assert "ImportKeyMaterial: succeeded" in checked_import, checked_import
    assert "DescribeKey KeyState: Enabled" in checked_import, checked_import
    assert "Encrypt/Decrypt round trip: failed" in checked_import, checked_import


@then(parsers.parse('the lifecycle CMK is in state "{state}"'))
def lifecycle_cmk_state(lifecycle_kms, request: pytest.FixtureRequest, state: str) -> None:
    key_id = _lifecycle_key_id(request)
    described = lifecycle_kms.describe_key(key_id)
    assert described.metadata.key_state == state, (
        f"DescribeKey {key_id} (RequestId {described.request_id}) shows KeyState "
        f"{described.metadata.key_state}, expected {state}"
    )


def _lifecycle_key_id(request: pytest.FixtureRequest) -> str:
    for name in ("lifecycle_cmk", "pending_upload"):
        if name in request.fixturenames:
            return request.getfixturevalue(name).key_id
    raise AssertionError("the scenario has no lifecycle CMK: start it with a 'CMK on the lifecycle emulator' step")


@then(parsers.parse('Encrypt with the lifecycle CMK is rejected with "{code}"'))
def lifecycle_encrypt_rejected(lifecycle_kms, lifecycle_cmk: LifecycleCmk, evidence, code: str) -> None:
    run_step(evidence, lifecycle.encrypt_rejected, lifecycle_kms, lifecycle_cmk.key_id, expected_code=code)


@then(parsers.parse('the ciphertext made before decrypts again to "{plaintext}"'))
def lifecycle_old_ciphertext(lifecycle_kms, ciphertext: Ciphertext, plaintext: str) -> None:
    result = lifecycle_kms.decrypt(ciphertext.blob)
    assert result.plaintext == plaintext, f"Decrypt (RequestId {result.request_id}) returned other data"


# -- preconditions (10) ------------------------------------------------------------------------


@given(parsers.parse("an AES key of {length:d} bytes generated on the HSM by mistake"), target_fixture="aes_key")
def short_aes_key(hsm_session, run_objects, evidence, length: int) -> HsmObject:
    label = run_objects.label("aes")
    run_objects.created_object(label, "CKO_SECRET_KEY")
    record = run_step(evidence, lifecycle.generate_aes_key_of_length, hsm_session, label=label, value_len=length)
    return HsmObject(label, "CKO_SECRET_KEY", record)


@when("I try to wrap and upload the AES key", target_fixture="preflight")
def try_wrap_and_upload(kms, hsm_session, cmk: Cmk, import_parameters: ImportBundle, wrapping_key, aes_key, evidence) -> PreflightOutcome:
    before = _import_calls(kms)
    message = ""
    try:
        blob, record = run_step(
            evidence,
            flow.wrap_aes_key,
            hsm_session,
            wrapping_key_label=wrapping_key.label,
            aes_key_label=aes_key.label,
            wrapping_algorithm=import_parameters.wrapping_algorithm,
        )
        wrapped = WrappedKey(aes_key.label, import_parameters.wrapping_algorithm, blob, record)
        run_step(
            evidence,
            flow.import_key_material,
            kms,
            cmk.key_id,
            wrapped_key=wrapped.blob,
            parameters=import_parameters.parameters,
        )
    except KeyMaterialLengthError as error:
        message = error.diagnostics()
    except Exception as error:  # noqa: BLE001 - any other outcome is reported by the Then steps
        message = f"{type(error).__name__}: {error}"
    return PreflightOutcome(message, before, _import_calls(kms))


@then(parsers.parse('the pre-flight check stops it with "{text}"'))
def preflight_stopped(preflight: PreflightOutcome, text: str) -> None:
    assert text in preflight.error_message, f"the wrap and upload ended with: {preflight.error_message or 'no error'}"


@then("no ImportKeyMaterial call was made")
def no_import_call(preflight: PreflightOutcome) -> None:
    made = preflight.import_calls_after - preflight.import_calls_before
    assert made == 0, f"{made} ImportKeyMaterial call(s) were made although the material had the wrong length"


# -- binding proof (11) --------------------------------------------------------------------------


@then(parsers.parse('the HSM decrypts the CiphertextBlob with the AES key to "{plaintext}"'))
def hsm_decrypts_blob(hsm_session, profile, cmk: Cmk, ciphertext: Ciphertext, evidence, plaintext: str) -> None:
    record = run_step(
        evidence,
        lifecycle.prove_binding,
        hsm_session,
        aes_key_label=cmk.aes_key_label,
        ciphertext_blob=ciphertext.blob,
        plaintext=plaintext,
        encryption_context=ciphertext.encryption_context,
        layout_documented=profile.kms.uses_emulator,
    )
    assert record.verdict in (PASSED, INFORMATIONAL), f"binding proof verdict {record.verdict}"


# -- import parameters per wrapping algorithm (01 outline) -------------------------------------


@when(parsers.parse('I download the import parameters for wrapping algorithm "{algorithm}"'), target_fixture="import_parameters")
def import_parameters_for_algorithm(kms, profile, cmk: Cmk, evidence, algorithm: str) -> ImportBundle:
    parameters, public_key, record = run_step(
        evidence,
        flow.get_import_parameters,
        kms,
        cmk.key_id,
        wrapping_algorithm=algorithm,
        wrapping_key_spec=profile.kms.wrapping_key_spec,
    )
    return ImportBundle(cmk.key_id, algorithm, parameters, public_key, record)


@then(parsers.parse('the import token is bound to wrapping algorithm "{algorithm}"'))
def token_bound_to_algorithm(import_parameters: ImportBundle, algorithm: str) -> None:
    bound = import_parameters.parameters.wrapping_algorithm
    assert bound == algorithm, f"GetParametersForImport returned WrappingAlgorithm {bound}, expected {algorithm}"
