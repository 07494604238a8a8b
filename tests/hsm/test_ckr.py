"""CKR names and the translation of PyKCS11 errors into HsmError."""

from __future__ import annotations

import PyKCS11

from byok.errors import HsmError
from byok.hsm import CKR_NAMES, ckr_name, translate_error, wrap_mechanism_for


def test_table_has_standard_and_luna_codes() -> None:
    assert CKR_NAMES[0x0] == "CKR_OK"
    assert CKR_NAMES[0x68] == "CKR_KEY_FUNCTION_NOT_PERMITTED"
    assert CKR_NAMES[0x6A] == "CKR_KEY_UNEXTRACTABLE"
    assert CKR_NAMES[0x8000000D] == "CKR_WRAPPING_ERROR"
    assert CKR_NAMES[0x8000001A] == "CKR_USER_NOT_AUTHORIZED"
    assert CKR_NAMES[0x80000020] == "CKR_PARTITION_DISABLED"
    assert CKR_NAMES[0x80000030] == "CKR_OPERATION_NOT_ALLOWED"
    assert all(name.startswith("CKR_") for name in CKR_NAMES.values())


def test_ckr_name_of_unknown_codes() -> None:
    assert ckr_name(0x80000099) == "CKR_VENDOR_DEFINED+0x99"
    assert ckr_name(0x7777) == "CKR_0x00007777"


def test_key_function_not_permitted_on_wrap() -> None:
    error = translate_error(
        PyKCS11.PyKCS11Error(0x68),
        operation="C_WrapKey",
        labels=["kms-wrapping-key", "aes-key"],
        mechanism=wrap_mechanism_for("RSAES_OAEP_SHA_1"),
    )

    assert isinstance(error, HsmError)
    assert error.ckr == 0x68
    assert error.ckr_name == "CKR_KEY_FUNCTION_NOT_PERMITTED"
    assert error.operation == "C_WrapKey"
    assert "'kms-wrapping-key'" in error.message
    assert "CKA_WRAP" in error.message
    assert "CKM_RSA_PKCS_OAEP(hashAlg=CKM_SHA_1" in error.message
    assert "wrap_attribute" in error.fix


def test_oaep_arguments_bad_names_parameters() -> None:
    error = translate_error(
        PyKCS11.PyKCS11Error(0x7),
        operation="C_WrapKey",
        labels=["kms-wrapping-key", "aes-key"],
        mechanism=wrap_mechanism_for("RSAES_OAEP_SHA_256"),
    )

    assert error.ckr_name == "CKR_ARGUMENTS_BAD"
    assert "hashAlg=CKM_SHA256 (0x250)" in error.message
    assert "mgf=CKG_MGF1_SHA256 (0x2)" in error.message
    assert "pSourceData=NULL" in error.message
    assert "SoftHSM2 2.6.1 accepts CKM_RSA_PKCS_OAEP only with hashAlg=CKM_SHA_1" in error.message


def test_mechanism_param_invalid_also_explains_oaep() -> None:
    error = translate_error(
        PyKCS11.PyKCS11Error(0x71),
        operation="C_WrapKey",
        mechanism=wrap_mechanism_for("RSAES_OAEP_SHA_256"),
    )

    assert error.ckr_name == "CKR_MECHANISM_PARAM_INVALID"
    assert "hashAlg=CKM_SHA256" in error.message


def test_luna_vendor_code_is_named() -> None:
    error = translate_error(PyKCS11.PyKCS11Error(0x80000030), operation="C_WrapKey")

    assert error.ckr_name == "CKR_OPERATION_NOT_ALLOWED"
    assert "0x80000030" in error.message
    assert "policy" in error.message


def test_every_explanation_has_a_fix() -> None:
    for value in list(CKR_NAMES) + [0x7777, 0x80000099]:
        error = translate_error(PyKCS11.PyKCS11Error(value), operation="C_Test")
        assert error.fix, f"no fix for {ckr_name(value)}"
        assert error.ckr == value
