"""Capability negotiation on real SoftHSM2 tokens: full and restricted like a FIPS-mode partition."""

from __future__ import annotations

import PyKCS11
import pytest

from byok.errors import BlockedByEnvironment
from byok.evidence import INFORMATIONAL, PASSED
from byok.flow.capability import negotiate
from byok.hsm import Hsm, init_token, resolve_pin, wrap_mechanism_for
from byok.hsm.fips import SOURCE_DECLARED, SOURCE_PROBED, FipsModeRefusal

from .conftest import SoftHsmToken, softhsm_settings

RESTRICTION = "-CKM_RSA_PKCS,CKM_RSA_X_509"


@pytest.fixture(scope="module")
def restricted_token(
    tmp_path_factory: pytest.TempPathFactory, softhsm_module_available: None
) -> SoftHsmToken:
    state_dir = tmp_path_factory.mktemp("fips-state")
    settings = softhsm_settings("byok-hsm-fips-test", mechanisms=RESTRICTION)
    init_token(settings, state_dir)
    return SoftHsmToken(settings, state_dir, resolve_pin(settings, state_dir), Hsm.open(settings, state_dir))


def fresh_hsm(token: SoftHsmToken) -> Hsm:
    """A new Hsm for the token, so the FIPS state negotiation sets stays in this test."""
    return Hsm.open(token.settings, token.state_dir)


def test_sha1_works_on_softhsm(softhsm_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(softhsm_token), softhsm_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="off"
    )

    assert capability.blocked is None
    assert capability.require() is capability.record
    assert capability.record.verdict == PASSED
    assert capability.probes["RSAES_OAEP_SHA_1"].works
    assert "CKA_CHECK_VALUE" in capability.probes["RSAES_OAEP_SHA_1"].detail
    assert capability.fips.enabled is False
    assert capability.fips.source == SOURCE_DECLARED


def test_raw_mechanism_list_has_no_fake_entry(softhsm_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(softhsm_token), softhsm_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="off"
    )

    # PyKCS11 1.5.20's getMechanismList appends 0x1D; SoftHSM2 2.6.1 has no such mechanism.
    assert 0x1D not in capability.mechanisms
    assert PyKCS11.CKM_RSA_PKCS_OAEP in capability.mechanisms
    assert capability.record.observations["C_GetMechanismList count"] == len(capability.mechanisms)


def test_sha256_blocked_on_softhsm(softhsm_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(softhsm_token), softhsm_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_256", profile_fips="off"
    )

    assert capability.blocked is not None
    message = capability.blocked.message
    assert f"token {softhsm_token.settings.token_label!r}" in message
    assert "SoftHSM" in message
    assert "hashAlg=CKM_SHA256" in message
    assert "mgf=CKG_MGF1_SHA256" in message
    assert "C_WrapKey returned CKR_ARGUMENTS_BAD" in message
    assert "use WrappingAlgorithm RSAES_OAEP_SHA_1" in message
    assert "opencryptoki-emulator" in message
    assert capability.record.verdict == INFORMATIONAL
    with pytest.raises(BlockedByEnvironment):
        capability.require()


def test_detect_probes_pkcs1_on_full_token(softhsm_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(softhsm_token), softhsm_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="detect"
    )

    assert capability.fips.source == SOURCE_PROBED
    assert capability.fips.enabled is False
    assert capability.probes["RSAES_PKCS1_V1_5"].works


def test_restricted_token_lacks_rsa_pkcs(restricted_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(restricted_token), restricted_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="required"
    )

    assert capability.blocked is None
    assert PyKCS11.CKM_RSA_PKCS not in capability.mechanisms
    assert PyKCS11.CKM_RSA_X_509 not in capability.mechanisms
    assert capability.fips.enabled is True
    assert capability.probes["RSAES_PKCS1_V1_5"].outcome == "refused by byok in FIPS mode"


def test_restricted_token_detected_by_probe(restricted_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(restricted_token), restricted_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="detect"
    )

    assert capability.fips.source == SOURCE_PROBED
    assert capability.fips.enabled is True
    assert capability.probes["RSAES_PKCS1_V1_5"].outcome == "not attempted"


def test_fips_blocks_pkcs1_algorithm(restricted_token: SoftHsmToken) -> None:
    capability = negotiate(
        fresh_hsm(restricted_token), restricted_token.pin, wrapping_algorithm="RSAES_PKCS1_V1_5", profile_fips="required"
    )

    assert capability.blocked is not None
    assert "FIPS mode" in capability.blocked.message
    assert "CKM_RSA_PKCS" in capability.blocked.message


def test_fips_session_refuses_before_lookup(restricted_token: SoftHsmToken) -> None:
    hsm = fresh_hsm(restricted_token)
    negotiate(hsm, restricted_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="required")

    with hsm.session(restricted_token.pin) as session, pytest.raises(FipsModeRefusal) as raised:
        # Neither label exists: a lookup would raise HsmError, so the refusal came first.
        session.wrap_key("no-such-wrap", "no-such-aes", wrap_mechanism_for("RSAES_PKCS1_V1_5"))

    assert "FIPS mode" in str(raised.value)


def test_probe_objects_are_destroyed(softhsm_token: SoftHsmToken) -> None:
    hsm = fresh_hsm(softhsm_token)
    negotiate(hsm, softhsm_token.pin, wrapping_algorithm="RSAES_OAEP_SHA_1", profile_fips="off")

    with hsm.session(softhsm_token.pin) as session:
        labels = [entry["label"] or "" for entry in session.find_objects()]

    assert not [label for label in labels if label.startswith("byok-probe-")]
