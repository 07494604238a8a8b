"""pkcs11-spy call evidence: trace filtering and a traced wrap on a real SoftHSM2 token."""

from __future__ import annotations

import pytest

from byok.errors import ConfigError
from byok.hsm.spy import filter_trace, parse_calls, trace_trial_wrap
from byok.profile import resolve_module

from .conftest import SoftHsmToken

TRACE = """\
11: C_Login
2026-12-04 20:36:33.507
[in] hSession = 0x3
[in] userType = CKU_USER
[in] pPin[ulPinLen] 000055fdfdd6a7a0 / 8
    00000000  31 32 33 34 35 36 37 38                          12345678
Returned:  0 CKR_OK

14: C_WrapKey
2026-12-04 20:36:33.513
[in] hSession = 0x3
[in] pMechanism->type = CKM_RSA_PKCS_OAEP
[in] pMechanism->pParameter->hashAlg = CKM_SHA256
[in] pMechanism->pParameter->mgf = CKG_MGF1_SHA256
[in] pMechanism->pParameter->source = 1
[in] hWrappingKey = 0x4
[in] hKey = 0x5
[out] pWrappedKey[*pulWrappedKeyLen] 000055fdfdd6ef50 / 32
    00000000  84 43 D6 16 0F EE C8 C5 4A 33 1A 0A 5C 35 40 00  .C......J3..\\5@.
    00000010  BD B8 E6 0A D0 CD 74 35 C2 E2 D3 B1 A2 00 CD 26  ......t5.......&
Returned:  0 CKR_OK

15: C_SetPIN
[in] pOldPin[ulOldLen] 000055fdfdd6a7a0 / 8
    00000000  31 32 33 34 35 36 37 38                          12345678
Returned:  0 CKR_OK
"""


def test_filter_keeps_only_wrap_calls() -> None:
    excerpt = filter_trace(TRACE)

    assert "C_WrapKey" in excerpt
    assert "C_Login" not in excerpt
    assert "C_SetPIN" not in excerpt
    assert "12345678" not in excerpt
    assert "31 32 33 34" not in excerpt
    assert "[hex dump of 2 line(s) omitted]" in excerpt
    assert "84 43 D6" not in excerpt


def test_parse_calls_reads_parameters() -> None:
    calls = parse_calls(filter_trace(TRACE))

    assert len(calls) == 1
    assert calls[0]["pMechanism->type"] == "CKM_RSA_PKCS_OAEP"
    assert calls[0]["pMechanism->pParameter->hashAlg"] == "CKM_SHA256"
    assert calls[0]["pMechanism->pParameter->mgf"] == "CKG_MGF1_SHA256"
    assert calls[0]["Returned"] == "0 CKR_OK"


@pytest.fixture(scope="module")
def spy_available() -> None:
    try:
        resolve_module("pkcs11-spy.so")
    except ConfigError as error:
        pytest.fail(f"pkcs11-spy.so is missing; 'make test' installs opensc-pkcs11: {error}")


def test_traced_wrap_on_softhsm(softhsm_token: SoftHsmToken, spy_available: None) -> None:
    trace = trace_trial_wrap(
        softhsm_token.settings, softhsm_token.state_dir, "RSAES_OAEP_SHA_1", softhsm_token.pin
    )

    # PyKCS11 calls C_WrapKey twice: once for the length, once for the blob.
    assert len(trace.calls) == 2
    assert trace.calls[-1]["pMechanism->pParameter->hashAlg"] == "CKM_SHA_1"
    assert trace.calls[-1]["Returned"] == "0 CKR_OK"
    assert softhsm_token.pin.reveal() not in trace.excerpt
