"""Steps that act on the HSM: the wrapping public key, the AES key and the wrap."""

from __future__ import annotations

from pytest_bdd import given, then, when

from byok import flow
from byok.hsm import ckr_name
from steps.context import HsmObject, ImportBundle, WrappedKey
from steps.kms_steps import run_step

_BOOLEAN_WORDS = {"true": True, "false": False}


def _expected_value(text: str):
    text = text.strip()
    if text.lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[text.lower()]
    if text.isdigit():
        return int(text)
    return text


@when("I import the wrapping public key into the HSM", target_fixture="wrapping_key")
@given("the wrapping public key is on the HSM", target_fixture="wrapping_key")
def wrapping_key_on_hsm(hsm_session, profile, import_parameters: ImportBundle, run_objects, evidence) -> HsmObject:
    label = run_objects.label("wrap")
    run_objects.created_object(label, "CKO_PUBLIC_KEY")
    record = run_step(
        evidence,
        flow.import_wrapping_public_key,
        hsm_session,
        import_parameters.public_key,
        label=label,
        wrap_attribute=profile.hsm.wrap_attribute,
        token_object=profile.hsm.public_key_token_object,
    )
    return HsmObject(label, "CKO_PUBLIC_KEY", record)


def _public_key_attributes(hsm_session, wrapping_key: HsmObject) -> dict:
    return hsm_session.read_attributes(
        wrapping_key.label, "CKO_PUBLIC_KEY", ["CKA_WRAP", "CKA_ENCRYPT", "CKA_MODULUS_BITS", "CKA_TOKEN"]
    )


@then("the public key object has CKA_WRAP true")
def public_key_can_wrap(hsm_session, wrapping_key: HsmObject) -> None:
    value = _public_key_attributes(hsm_session, wrapping_key)["CKA_WRAP"]
    assert value is True, f"{wrapping_key.label} reads back CKA_WRAP={value}"


@then("the public key object has CKA_ENCRYPT true")
def public_key_can_encrypt(hsm_session, wrapping_key: HsmObject) -> None:
    value = _public_key_attributes(hsm_session, wrapping_key)["CKA_ENCRYPT"]
    assert value is True, f"{wrapping_key.label} reads back CKA_ENCRYPT={value}"


@then("the public key object is a 2048-bit RSA key")
def public_key_is_2048_bits(hsm_session, wrapping_key: HsmObject) -> None:
    value = _public_key_attributes(hsm_session, wrapping_key)["CKA_MODULUS_BITS"]
    assert value == 2048, f"{wrapping_key.label} reads back CKA_MODULUS_BITS={value}"


@then("the public key object is a session object")
def public_key_is_session_object(hsm_session, wrapping_key: HsmObject, profile) -> None:
    value = _public_key_attributes(hsm_session, wrapping_key)["CKA_TOKEN"]
    assert value is profile.hsm.public_key_token_object is False, f"{wrapping_key.label} reads back CKA_TOKEN={value}"


@when("I generate an AES-256 key on the HSM", target_fixture="aes_key")
@given("an AES-256 key generated on the HSM", target_fixture="aes_key")
def aes_key_on_hsm(hsm_session, run_objects, evidence) -> HsmObject:
    label = run_objects.label("aes")
    run_objects.created_object(label, "CKO_SECRET_KEY")
    key_id, record = run_step(evidence, flow.generate_aes_key, hsm_session, label=label)
    return HsmObject(label, "CKO_SECRET_KEY", record, key_id)


@then("the AES key has the attributes")
def aes_key_attributes(hsm_session, aes_key: HsmObject, datatable) -> None:
    header, *rows = datatable
    assert header == ["attribute", "value"], f"the table needs the columns attribute and value, not {header}"
    names = [name for name, _ in rows]
    actual = hsm_session.read_attributes(aes_key.label, "CKO_SECRET_KEY", names)
    wrong = {
        name: actual.get(name) for name, expected in rows if actual.get(name) != _expected_value(expected)
    }
    assert not wrong, f"{aes_key.label} reads back {wrong}, expected {dict(rows)}"


@then("the AES key was generated with CKM_AES_KEY_GEN where the token records it")
def aes_key_generation_mechanism(hsm_session, aes_key: HsmObject) -> None:
    value = hsm_session.read_attributes(aes_key.label, "CKO_SECRET_KEY", ["CKA_KEY_GEN_MECHANISM"])["CKA_KEY_GEN_MECHANISM"]
    if value is None:
        aes_key.record.observe("CKA_KEY_GEN_MECHANISM", "not supported by the token")
        return
    assert value == "CKM_AES_KEY_GEN", f"{aes_key.label} reads back CKA_KEY_GEN_MECHANISM={value}"


@then("reading CKA_VALUE of the AES key is refused with CKR_ATTRIBUTE_SENSITIVE")
def aes_key_value_sensitive(hsm_session, aes_key: HsmObject) -> None:
    ckr = ckr_name(hsm_session.attribute_ckr(aes_key.label, "CKO_SECRET_KEY", "CKA_VALUE"))
    assert ckr == "CKR_ATTRIBUTE_SENSITIVE", f"C_GetAttributeValue(CKA_VALUE) of {aes_key.label} returned {ckr}"


@when("I wrap the AES key with the wrapping public key", target_fixture="wrapped_key")
@given("the AES key wrapped with the wrapping public key", target_fixture="wrapped_key")
def wrap_aes_key(hsm_session, import_parameters: ImportBundle, wrapping_key: HsmObject, aes_key: HsmObject, evidence) -> WrappedKey:
    blob, record = run_step(
        evidence,
        flow.wrap_aes_key,
        hsm_session,
        wrapping_key_label=wrapping_key.label,
        aes_key_label=aes_key.label,
        wrapping_algorithm=import_parameters.wrapping_algorithm,
    )
    return WrappedKey(aes_key.label, import_parameters.wrapping_algorithm, blob, record)


@then("the wrapped key is 256 bytes long")
def wrapped_key_length(wrapped_key: WrappedKey) -> None:
    assert len(wrapped_key.blob) == 256, f"C_WrapKey returned {len(wrapped_key.blob)} bytes"


# The mechanism each KMS WrappingAlgorithm needs, written out independently of
# byok.hsm.mechanisms so that a wrong mapping there fails this step.
_EXPECTED_MECHANISMS = {
    "RSAES_OAEP_SHA_1": ("CKM_RSA_PKCS_OAEP", "CKM_SHA_1", "CKG_MGF1_SHA1"),
    "RSAES_OAEP_SHA_256": ("CKM_RSA_PKCS_OAEP", "CKM_SHA256", "CKG_MGF1_SHA256"),
    "RSAES_PKCS1_V1_5": ("CKM_RSA_PKCS", None, None),
}


@then("the wrap used the mechanism the WrappingAlgorithm names")
def wrap_mechanism_matches(wrapped_key: WrappedKey, import_parameters: ImportBundle) -> None:
    used = wrapped_key.record.inputs["mechanism parameters"]
    mechanism, hash_alg, mgf = _EXPECTED_MECHANISMS[import_parameters.wrapping_algorithm]
    assert used["mechanism"] == mechanism, f"the wrap used {used['mechanism']}, expected {mechanism}"
    assert used.get("hashAlg") == hash_alg, f"the wrap used hashAlg {used.get('hashAlg')}, expected {hash_alg}"
    assert used.get("mgf") == mgf, f"the wrap used mgf {used.get('mgf')}, expected {mgf}"
    if mechanism == "CKM_RSA_PKCS_OAEP":
        assert used["source"] == "CKZ_DATA_SPECIFIED", f"the OAEP source is {used['source']}"
        assert used["ulSourceDataLen"] == 0, "the OAEP parameters carry a label"
