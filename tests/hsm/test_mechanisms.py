"""Wrap mechanism mapping and the packed CK_RSA_PKCS_OAEP_PARAMS."""

from __future__ import annotations

import ctypes
import struct

import PyKCS11
import PyKCS11.LowLevel
import pytest

from byok.errors import ConfigError
from byok.hsm import wrap_mechanism_for
from byok.hsm.mechanisms import mechanism_name

# CK_RSA_PKCS_OAEP_PARAMS: hashAlg, mgf, source (CK_ULONG), pSourceData (pointer), ulSourceDataLen (CK_ULONG).
_OAEP_LAYOUT = "@LLLPL"

OAEP_CASES = [
    ("RSAES_OAEP_SHA_1", 0x220, "CKM_SHA_1", 0x1, "CKG_MGF1_SHA1"),
    ("RSAES_OAEP_SHA_256", 0x250, "CKM_SHA256", 0x2, "CKG_MGF1_SHA256"),
]


@pytest.mark.parametrize(("algorithm", "hash_alg", "hash_name", "mgf", "mgf_name"), OAEP_CASES)
def test_oaep_packed_fields(
    algorithm: str, hash_alg: int, hash_name: str, mgf: int, mgf_name: str
) -> None:
    mechanism = wrap_mechanism_for(algorithm)
    packed = mechanism.packed_parameters()

    assert len(packed) == struct.calcsize(_OAEP_LAYOUT)
    assert len(packed) == PyKCS11.LowLevel.CK_RSA_PKCS_OAEP_PARAMS_LENGTH
    fields = struct.unpack(_OAEP_LAYOUT, packed)
    assert fields[0] == hash_alg
    assert fields[1] == mgf
    assert fields[2] == 0x1  # CKZ_DATA_SPECIFIED
    assert fields[3] == 0  # pSourceData NULL: no label
    assert fields[4] == 0  # ulSourceDataLen
    assert mechanism.mechanism == 0x9  # CKM_RSA_PKCS_OAEP
    assert mechanism.hash_alg_name == hash_name
    assert mechanism.mgf_name == mgf_name


def test_oaep_describe_names_parameters() -> None:
    assert wrap_mechanism_for("RSAES_OAEP_SHA_256").describe() == (
        "CKM_RSA_PKCS_OAEP(hashAlg=CKM_SHA256, mgf=CKG_MGF1_SHA256, source=CKZ_DATA_SPECIFIED, no label)"
    )
    assert wrap_mechanism_for("RSAES_OAEP_SHA_1").describe() == (
        "CKM_RSA_PKCS_OAEP(hashAlg=CKM_SHA_1, mgf=CKG_MGF1_SHA1, source=CKZ_DATA_SPECIFIED, no label)"
    )


def test_pkcs1_v1_5_has_no_parameters() -> None:
    mechanism = wrap_mechanism_for("RSAES_PKCS1_V1_5")

    assert mechanism.mechanism == PyKCS11.CKM_RSA_PKCS
    assert mechanism.describe() == "CKM_RSA_PKCS"
    assert mechanism.packed_parameters() == b""
    assert mechanism.is_oaep is False
    assert mechanism.to_pykcs11() is PyKCS11.MechanismRSAPKCS1


def test_to_pykcs11_matches_packed_parameters() -> None:
    mechanism = wrap_mechanism_for("RSAES_OAEP_SHA_256")
    native = mechanism.to_pykcs11().to_native()

    assert native.mechanism == PyKCS11.CKM_RSA_PKCS_OAEP
    assert native.ulParameterLen == len(mechanism.packed_parameters())


def test_as_dict_for_evidence() -> None:
    table = wrap_mechanism_for("RSAES_OAEP_SHA_1").as_dict()

    assert table["wrapping_algorithm"] == "RSAES_OAEP_SHA_1"
    assert table["mechanism"] == "CKM_RSA_PKCS_OAEP"
    assert table["hashAlg"] == "CKM_SHA_1"
    assert table["ulSourceDataLen"] == 0
    assert (
        bytes.fromhex(table["parameters_hex"])
        == wrap_mechanism_for("RSAES_OAEP_SHA_1").packed_parameters()
    )


def test_unknown_algorithm_names_allowed_values() -> None:
    with pytest.raises(ConfigError) as raised:
        wrap_mechanism_for("RSAES_OAEP_SHA_512")

    assert "RSAES_OAEP_SHA_512" in raised.value.message
    for allowed in ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "RSAES_PKCS1_V1_5"):
        assert allowed in raised.value.fix


def test_mechanism_name_of_vendor_and_unknown() -> None:
    assert mechanism_name(0x1080) == "CKM_AES_KEY_GEN"
    assert mechanism_name(0x80000170) == "CKM_VENDOR_DEFINED+0x170"
    assert ctypes.sizeof(ctypes.c_ulong) in (4, 8)
