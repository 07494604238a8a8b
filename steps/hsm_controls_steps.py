"""Steps of the partition readiness and HSM negative-control features, and the per-scenario HSM hygiene check.

The negative controls follow the key-management checks of google/pkcs11test (attribute
latches, sensitive values) and the Tookan key-separation attack patterns. Each requests
from the token something it must reject and records the exact CKR.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from pytest_bdd import given, parsers, then, when

from byok.errors import HsmError
from byok.evidence import FAILED, PASSED, StepRecord
from byok.hsm import ckr_name, wrap_mechanism_for
from byok.hsm import library as hsm_library
from byok.hsm.fips import FipsModeRefusal
from byok.hsm.session import PROBE_LABEL_PREFIX
from steps.context import ImportBundle

SECTION_READINESS = "Partition readiness"
SECTION_CONTROLS = "HSM negative controls"


@dataclass
class ControlKey:
    label: str
    object_class: str


@dataclass
class ControlOutcome:
    """The token's return value for a request it must reject; ``ckr`` is None when the call succeeded."""

    request: str
    ckr: str | None
    record: StepRecord = field(repr=False)


def _attach(evidence, record: StepRecord) -> StepRecord:
    evidence(record.finish())
    return record


# -- hygiene ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def hsm_hygiene(request: pytest.FixtureRequest):
    """Negotiate capabilities before the first scenario; after every scenario check HSM hygiene.

    After each scenario, passed or failed, no session byok opened may be left open,
    and no object labelled with the run id may be left on the token except the AES
    keys the run keeps. Runs only for Gherkin scenarios. It is autouse, so it is set
    up before and torn down after the scenario's hsm_session.
    """
    # pytest-bdd's scenario functions, and nothing else, take the _pytest_bdd_example fixture.
    is_scenario = "_pytest_bdd_example" in request.fixturenames
    if is_scenario:
        # Negotiate before the first scenario, so that every wrap of the run, in any
        # feature, is blocked rather than failed when the token cannot do it.
        request.getfixturevalue("capability")
        # Fixtures are looked up before the scenario runs: pytest 9 deprecates doing so
        # during teardown.
        hsm = request.getfixturevalue("hsm")
        pin = request.getfixturevalue("_hsm_pin")
        run_objects = request.getfixturevalue("run_objects")
    yield
    if not is_scenario or not hsm_library.loaded_modules():
        return
    left_open = {path: count for path, count in hsm_library.open_session_counts().items() if count}
    assert not left_open, f"PKCS#11 sessions left open after the scenario: {left_open}"

    with hsm.session(pin) as session:
        labels = [entry["label"] or "" for entry in session.find_objects()]
    stray = sorted(
        label
        for label in labels
        if (run_objects.run_id in label and label not in run_objects.kept)
        or label.startswith(PROBE_LABEL_PREFIX)
    )
    assert not stray, f"objects of this run left on token {hsm.token_label!r}: {stray}"


# -- partition readiness ----------------------------------------------------------------------


@given("the token named in the profile", target_fixture="token_readiness")
def token_named_in_profile(hsm, evidence) -> StepRecord:
    info = hsm.token_info()
    record = StepRecord("token_readiness", SECTION_READINESS, inputs={"token label": hsm.token_label})
    record.observe("token", {
        "label": info.label,
        "manufacturer": info.manufacturer_id,
        "model": info.model,
        "serial number": info.serial_number,
        "firmware": info.firmware_version,
        "flags": list(info.flag_names),
        "module": info.module_path,
        "library": f"{info.library_description} {info.library_version}",
    })
    record.check("token label", hsm.token_label, info.label)
    _attach(evidence, record)
    return record


@then("the token is initialised")
def token_initialised(hsm) -> None:
    flags = hsm.token_info().flag_names
    assert "CKF_TOKEN_INITIALIZED" in flags, f"token {hsm.token_label!r} has flags {flags}"


@then("the user PIN of the token is set")
def user_pin_set(hsm) -> None:
    flags = hsm.token_info().flag_names
    assert "CKF_USER_PIN_INITIALIZED" in flags, f"token {hsm.token_label!r} has flags {flags}"
    assert "CKF_USER_PIN_LOCKED" not in flags, f"the user PIN of {hsm.token_label!r} is locked"


@then("the user can log in to the token")
def user_can_log_in(hsm, _hsm_pin, token_readiness: StepRecord, evidence) -> None:
    # Login state belongs to the process: C_Login is sent only when no other session is logged in.
    sends_login = not hsm.is_logged_in()
    with hsm.session(_hsm_pin) as session:
        visible = len(session.find_objects())
    record = StepRecord("user_login", SECTION_READINESS, inputs={"token label": hsm.token_label})
    record.observe("C_Login(CKU_USER) sent", sends_login)
    record.observe("objects visible after login", visible)
    _attach(evidence, record)


@given("the capability negotiation of the run", target_fixture="negotiated")
def capability_of_run(capability, evidence):
    evidence(capability.record)
    return capability


@then("the FIPS mode of the token is known and recorded as evidence")
def fips_mode_known(negotiated) -> None:
    fips = negotiated.record.observations.get("FIPS")
    assert fips is not None, "the capability record has no FIPS entry"
    assert fips["FIPS mode"] in (True, False), f"FIPS mode is {fips['FIPS mode']!r}"
    assert fips["known by"] in ("read", "declared", "probed"), f"FIPS state known by {fips['known by']!r}"


@then("the mechanism inventory of the token is recorded as evidence")
def mechanism_inventory_recorded(negotiated) -> None:
    inventory = negotiated.record.observations.get("mechanism inventory", {})
    assert "CKM_RSA_PKCS_OAEP" in inventory, "the inventory lacks CKM_RSA_PKCS_OAEP"
    assert isinstance(inventory["CKM_RSA_PKCS_OAEP"], dict), (
        f"CKM_RSA_PKCS_OAEP: {inventory['CKM_RSA_PKCS_OAEP']}"
    )
    assert "CKF_WRAP" in inventory["CKM_RSA_PKCS_OAEP"]["flags"], "CKM_RSA_PKCS_OAEP lacks CKF_WRAP"
    assert negotiated.record.observations["C_GetMechanismList count"] == len(negotiated.mechanisms)


@then("every wrapping algorithm was tried with a throw-away wrap of session keys")
def every_algorithm_probed(negotiated) -> None:
    from byok.profile import WRAPPING_ALGORITHMS

    missing = [algorithm for algorithm in WRAPPING_ALGORITHMS if algorithm not in negotiated.probes]
    assert not missing, f"no trial wrap result for {missing}"
    assert any(probe.works for probe in negotiated.probes.values()), (
        f"no wrapping algorithm works: {negotiated.record.observations['trial wraps']}"
    )


@then("raw RSA (CKM_RSA_X_509) is not used for wrapping")
def raw_rsa_not_used(negotiated, hsm_session) -> None:
    from byok.hsm.mechanisms import WrapMechanism

    raw = WrapMechanism(algorithm="raw RSA", mechanism=0x3, mechanism_name="CKM_RSA_X_509")
    with pytest.raises(HsmError) as refused:
        hsm_session.wrap_key("byok-no-such-wrapping-key", "byok-no-such-aes-key", raw)
    assert refused.value.ckr is None, f"the token was called: {refused.value}"
    # A token that offers CKM_RSA_X_509 for wrapping is recorded, not failed: byok never uses it.
    if negotiated.warnings:
        negotiated.record.observe("warnings", negotiated.warnings)


@given("the token is in FIPS mode")
def token_in_fips_mode(negotiated) -> None:
    if not negotiated.fips.enabled:
        # A runtime skip keeps the scenario in the report with its reason.
        pytest.skip(
            f"the token is not in FIPS mode ({negotiated.fips.source}: {negotiated.fips.detail}), "
            "so there is no PKCS#1 v1.5 refusal to show"
        )


@then("wrapping with RSAES_PKCS1_V1_5 is refused before any HSM call")
def pkcs1_refused(hsm_session, negotiated, evidence) -> None:
    record = StepRecord(
        "fips_refusal", SECTION_READINESS, inputs={"WrappingAlgorithm": "RSAES_PKCS1_V1_5"}
    )
    # Neither label exists, so any PKCS#11 lookup would end in HsmError rather than the refusal.
    with pytest.raises(FipsModeRefusal) as refused:
        hsm_session.wrap_key(
            "byok-no-such-wrapping-key", "byok-no-such-aes-key", wrap_mechanism_for("RSAES_PKCS1_V1_5")
        )
    record.observe("refusal", refused.value.message)
    record.check("message names FIPS mode", True, "FIPS mode" in refused.value.message)
    record.check("message names CKM_RSA_PKCS", True, "CKM_RSA_PKCS" in refused.value.message)
    _attach(evidence, record)
    assert record.verdict == PASSED, f"the refusal does not name FIPS mode and CKM_RSA_PKCS: {refused.value}"


@then("C_GetMechanismList lacks CKM_RSA_PKCS where the token removes it in FIPS mode")
def mechanism_list_lacks_rsa_pkcs(negotiated, profile) -> None:
    import PyKCS11

    listed = PyKCS11.CKM_RSA_PKCS in negotiated.mechanisms
    negotiated.record.observe("CKM_RSA_PKCS in C_GetMechanismList", listed)
    removed_by_config = profile.hsm.family == "softhsm" and "CKM_RSA_PKCS" in (profile.hsm.mechanisms or "")
    if removed_by_config:
        assert not listed, "SoftHSM2's slots.mechanisms should have removed CKM_RSA_PKCS"
    # NOTE: Luna keeps CKM_RSA_PKCS listed in FIPS mode because signing is still allowed,
    # so elsewhere the list is only recorded.


# -- negative controls ------------------------------------------------------------------------


@given(parsers.parse("an RSA public key on the HSM with CKA_WRAP {value}"), target_fixture="control_wrapping_key")
def control_public_key(hsm_session, run_objects, value: str) -> ControlKey:
    wrap = {"true": True, "false": False}[value]
    label = run_objects.label("control-pub")
    run_objects.created_object(label, "CKO_PUBLIC_KEY")
    public_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    table = hsm_session.create_rsa_public_key(public_key, label, wrap=wrap)
    assert table["CKA_WRAP"] is wrap, f"{label} reads back CKA_WRAP={table['CKA_WRAP']}"
    return ControlKey(label, "CKO_PUBLIC_KEY")


@given(parsers.parse("an {kind} AES-256 session key on the HSM"), target_fixture="control_aes_key")
@given(parsers.parse("a {kind} AES-256 session key on the HSM"), target_fixture="control_aes_key")
def control_aes_key(hsm_session, run_objects, kind: str) -> ControlKey:
    extractable = {"extractable": True, "non-extractable": False}[kind]
    label = run_objects.label("control-aes")
    run_objects.created_object(label, "CKO_SECRET_KEY")
    hsm_session.generate_aes_key(label, label.encode("utf-8")[-32:], token=False, extractable=extractable)
    return ControlKey(label, "CKO_SECRET_KEY")


@when("I try to wrap the AES key with that public key", target_fixture="control_outcome")
def try_wrap(hsm_session, capability, control_wrapping_key: ControlKey, control_aes_key: ControlKey) -> ControlOutcome:
    # A mechanism the token accepts, so the refusal comes from the key attributes under test.
    algorithm = capability.usable_algorithm()
    mechanism = wrap_mechanism_for(algorithm)
    record = StepRecord(
        "negative_control_wrap",
        SECTION_CONTROLS,
        inputs={
            "wrapping key": control_wrapping_key.label,
            "key to wrap": control_aes_key.label,
            "mechanism": mechanism.describe(),
        },
    )
    try:
        hsm_session.wrap_key(control_wrapping_key.label, control_aes_key.label, mechanism)
    except HsmError as error:
        return ControlOutcome("C_WrapKey", error.ckr_name, record)
    return ControlOutcome("C_WrapKey", None, record)


@when(parsers.parse("I try to set {attribute} of the AES key to {value}"), target_fixture="control_outcome")
def try_set_attribute(hsm_session, control_aes_key: ControlKey, attribute: str, value: str) -> ControlOutcome:
    new_value = {"true": True, "false": False}[value]
    record = StepRecord(
        "negative_control_set_attribute",
        SECTION_CONTROLS,
        inputs={"key": control_aes_key.label, "attribute": attribute, "requested value": new_value},
    )
    try:
        hsm_session.set_attribute(control_aes_key.label, "CKO_SECRET_KEY", attribute, new_value)
    except HsmError as error:
        return ControlOutcome(f"C_SetAttributeValue({attribute})", error.ckr_name, record)
    return ControlOutcome(f"C_SetAttributeValue({attribute})", None, record)


@when("I try to read CKA_VALUE of the AES key", target_fixture="control_outcome")
def try_read_value(hsm_session, control_aes_key: ControlKey) -> ControlOutcome:
    record = StepRecord("negative_control_read_value", SECTION_CONTROLS, inputs={"key": control_aes_key.label})
    ckr = ckr_name(hsm_session.attribute_ckr(control_aes_key.label, "CKO_SECRET_KEY", "CKA_VALUE"))
    return ControlOutcome("C_GetAttributeValue(CKA_VALUE)", None if ckr == "CKR_OK" else ckr, record)


@then(parsers.parse("the token refuses with {expected}"))
def token_refuses(control_outcome: ControlOutcome, expected: str, evidence) -> None:
    record = control_outcome.record
    record.observe("request", control_outcome.request)
    record.observe("returned", control_outcome.ckr or "CKR_OK")
    record.check(f"{control_outcome.request} refused", expected, control_outcome.ckr or "CKR_OK")
    _attach(evidence, record)
    assert control_outcome.ckr == expected, (
        f"{control_outcome.request} returned {control_outcome.ckr or 'CKR_OK'}, expected {expected}"
    )


@then(parsers.parse("the AES key still reads {attribute} {value}"))
def aes_key_unchanged(hsm_session, control_aes_key: ControlKey, attribute: str, value: str) -> None:
    expected = {"true": True, "false": False}[value]
    actual = hsm_session.read_attributes(control_aes_key.label, "CKO_SECRET_KEY", [attribute])[attribute]
    assert actual is expected, f"{control_aes_key.label} reads back {attribute}={actual}, expected {expected}"


@then("no object visible in the session has both CKA_WRAP and CKA_DECRYPT true")
def no_wrap_and_decrypt(hsm_session, evidence) -> None:
    violations = hsm_session.key_separation_violations()
    record = StepRecord("key_separation", SECTION_CONTROLS)
    record.observe("objects with CKA_WRAP and CKA_DECRYPT", violations)
    record.check("objects with CKA_WRAP and CKA_DECRYPT", [], violations)
    _attach(evidence, record)
    assert not violations, f"objects that can both wrap and decrypt: {violations}"


@then("no private key on the token has the modulus of the KMS wrapping public key")
def kms_private_key_absent(hsm_session, import_parameters: ImportBundle, evidence) -> None:
    numbers = import_parameters.public_key.key.public_numbers()
    modulus = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    matches = hsm_session.private_keys_with_modulus(modulus)
    record = StepRecord(
        "kms_private_key_absent",
        SECTION_CONTROLS,
        inputs={"PublicKey SHA-256 fingerprint": import_parameters.public_key.fingerprint_sha256},
    )
    record.observe("private keys with the same modulus", matches)
    record.check("private keys with the KMS modulus", [], matches)
    _attach(evidence, record)
    assert record.verdict != FAILED, f"private keys with the KMS wrapping key's modulus: {matches}"


# -- PKCS#11 call evidence ---------------------------------------------------------------------


@when(
    "I trace a throw-away wrap with the profile's wrapping algorithm through pkcs11-spy",
    target_fixture="spy_trace",
)
def trace_wrap(negotiated, profile, byok_state_dir, _hsm_pin):
    import allure

    from byok.hsm.spy import trace_trial_wrap

    negotiated.require()
    trace = trace_trial_wrap(profile.hsm, byok_state_dir, profile.kms.wrapping_algorithm, _hsm_pin)
    allure.attach(
        trace.excerpt,
        name="pkcs11-spy: C_WrapKey calls (filtered)",
        attachment_type=allure.attachment_type.TEXT,
    )
    return trace


# The names pkcs11-spy prints for each WrappingAlgorithm, written out independently of
# byok.hsm.mechanisms so that a wrong mapping there fails this step.
_SPY_MECHANISMS = {
    "RSAES_OAEP_SHA_1": ("CKM_RSA_PKCS_OAEP", "CKM_SHA_1", "CKG_MGF1_SHA1"),
    "RSAES_OAEP_SHA_256": ("CKM_RSA_PKCS_OAEP", "CKM_SHA256", "CKG_MGF1_SHA256"),
    "RSAES_PKCS1_V1_5": ("CKM_RSA_PKCS", None, None),
}


@then("the trace shows C_WrapKey with the mechanism and parameters of the wrapping algorithm")
def trace_shows_mechanism(spy_trace, profile, evidence) -> None:
    mechanism, hash_alg, mgf = _SPY_MECHANISMS[profile.kms.wrapping_algorithm]
    call = spy_trace.calls[-1]
    record = StepRecord(
        "pkcs11_call_evidence", SECTION_CONTROLS, inputs={"WrappingAlgorithm": profile.kms.wrapping_algorithm}
    )
    record.observe("C_WrapKey calls traced", len(spy_trace.calls))
    record.observe("last C_WrapKey call", call)
    record.check("pMechanism->type", mechanism, call.get("pMechanism->type"))
    if hash_alg is not None:
        record.check("hashAlg", hash_alg, call.get("pMechanism->pParameter->hashAlg"))
        record.check("mgf", mgf, call.get("pMechanism->pParameter->mgf"))
        # CKZ_DATA_SPECIFIED is 1. Luna rejects source 0 with CKR_MECHANISM_INVALID.
        record.check("source", "1", call.get("pMechanism->pParameter->source"))
    record.check("Returned", "0 CKR_OK", call.get("Returned"))
    _attach(evidence, record)
    assert record.verdict == PASSED, f"the traced C_WrapKey differs: {record.failed_checks()}"


@then("the trace excerpt attached to the report contains no PIN")
def trace_contains_no_pin(spy_trace) -> None:
    for name in ("pPin", "pOldPin", "pNewPin", "C_Login"):
        assert name not in spy_trace.excerpt, f"the excerpt contains {name}"
