"""Wrap mechanisms for the KMS wrapping algorithms, built in one place.

Alibaba Cloud KMS names the wrapping algorithm in GetParametersForImport
(RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSAES_PKCS1_V1_5). Each maps to exactly one
PKCS#11 mechanism. OAEP always uses MGF1 with the same hash as the digest, source
CKZ_DATA_SPECIFIED and no label (pSourceData NULL, ulSourceDataLen 0) in
CK_RSA_PKCS_OAEP_PARAMS.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import PyKCS11

from byok.errors import ConfigError


class _CkRsaPkcsOaepParams(ctypes.Structure):
    """CK_RSA_PKCS_OAEP_PARAMS with the platform's CK_ULONG (unsigned long) and pointer sizes."""

    _fields_ = [
        ("hashAlg", ctypes.c_ulong),
        ("mgf", ctypes.c_ulong),
        ("source", ctypes.c_ulong),
        ("pSourceData", ctypes.c_void_p),
        ("ulSourceDataLen", ctypes.c_ulong),
    ]


@dataclass(frozen=True)
class WrapMechanism:
    """A C_WrapKey mechanism and its parameters, with both the numbers and the names."""

    algorithm: str
    mechanism: int
    mechanism_name: str
    hash_alg: int | None = None
    hash_alg_name: str | None = None
    mgf: int | None = None
    mgf_name: str | None = None
    source: int | None = None
    source_name: str | None = None

    @property
    def is_oaep(self) -> bool:
        return self.mechanism == PyKCS11.CKM_RSA_PKCS_OAEP

    def describe(self) -> str:
        """Return the mechanism and its parameters in PKCS#11 names, for messages and evidence."""
        if not self.is_oaep:
            return self.mechanism_name
        return (
            f"{self.mechanism_name}(hashAlg={self.hash_alg_name}, mgf={self.mgf_name}, "
            f"source={self.source_name}, no label)"
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the names and numbers as a flat table, for evidence records."""
        table: dict[str, Any] = {
            "wrapping_algorithm": self.algorithm,
            "mechanism": self.mechanism_name,
            "mechanism_value": f"0x{self.mechanism:X}",
        }
        if self.is_oaep:
            table.update(
                hashAlg=self.hash_alg_name,
                mgf=self.mgf_name,
                source=self.source_name,
                pSourceData=None,
                ulSourceDataLen=0,
                parameters_hex=self.packed_parameters().hex(),
            )
        return table

    def to_pykcs11(self) -> Any:
        """Build the PyKCS11 mechanism object that C_WrapKey receives."""
        if self.is_oaep:
            # RSAOAEPMechanism always sends source=CKZ_DATA_SPECIFIED and, without a
            # label, pSourceData NULL and ulSourceDataLen 0.
            return PyKCS11.RSAOAEPMechanism(self.hash_alg, self.mgf)
        if self.mechanism == PyKCS11.CKM_RSA_PKCS:
            return PyKCS11.MechanismRSAPKCS1
        return PyKCS11.Mechanism(self.mechanism)

    def packed_parameters(self) -> bytes:
        """Return CK_RSA_PKCS_OAEP_PARAMS as the token receives it, or b"" for a mechanism without parameters."""
        if not self.is_oaep:
            return b""
        params = _CkRsaPkcsOaepParams(
            hashAlg=self.hash_alg,
            mgf=self.mgf,
            source=self.source,
            pSourceData=None,
            ulSourceDataLen=0,
        )
        return bytes(params)


def _oaep(algorithm: str, hash_name: str, mgf_name: str) -> WrapMechanism:
    return WrapMechanism(
        algorithm=algorithm,
        mechanism=PyKCS11.CKM_RSA_PKCS_OAEP,
        mechanism_name="CKM_RSA_PKCS_OAEP",
        hash_alg=getattr(PyKCS11, hash_name),
        hash_alg_name=hash_name,
        mgf=getattr(PyKCS11, mgf_name),
        mgf_name=mgf_name,
        source=PyKCS11.CKZ_DATA_SPECIFIED,
        source_name="CKZ_DATA_SPECIFIED",
    )


_WRAP_MECHANISMS: dict[str, WrapMechanism] = {
    "RSAES_OAEP_SHA_1": _oaep("RSAES_OAEP_SHA_1", "CKM_SHA_1", "CKG_MGF1_SHA1"),
    # NOTE: KMS documentation does not say whether RSAES_OAEP_SHA_256 uses MGF1 with
    # SHA-256 or SHA-1; MGF1-SHA256 is assumed until a real import confirms it.
    "RSAES_OAEP_SHA_256": _oaep("RSAES_OAEP_SHA_256", "CKM_SHA256", "CKG_MGF1_SHA256"),
    "RSAES_PKCS1_V1_5": WrapMechanism(
        algorithm="RSAES_PKCS1_V1_5",
        mechanism=PyKCS11.CKM_RSA_PKCS,
        mechanism_name="CKM_RSA_PKCS",
    ),
}


def wrap_mechanism_for(wrapping_algorithm: str) -> WrapMechanism:
    """Map a KMS WrappingAlgorithm to its C_WrapKey mechanism; raise ConfigError for any other name."""
    try:
        return _WRAP_MECHANISMS[wrapping_algorithm]
    except KeyError:
        raise ConfigError(
            f"wrapping algorithm {wrapping_algorithm!r} is not supported",
            fix=f"use one of {', '.join(_WRAP_MECHANISMS)}",
        ) from None


def mechanism_name(mechanism: int) -> str:
    """Return the CKM_* name of a mechanism number, or its hex value for unknown and vendor mechanisms."""
    name = PyKCS11.CKM.get(mechanism)
    if isinstance(name, str):
        return name
    if mechanism >= PyKCS11.CKM_VENDOR_DEFINED:
        return f"CKM_VENDOR_DEFINED+0x{mechanism - PyKCS11.CKM_VENDOR_DEFINED:X}"
    return f"CKM_0x{mechanism:X}"
