"""PKCS#11 layer of byok over PyKCS11: token lookup, login, templates, read-back, wrapping, FIPS state, token bootstrap."""

from byok.hsm.ckr import CKR_NAMES, ckr_name, translate_error
from byok.hsm.config import resolve_pin
from byok.hsm.fips import FipsModeRefusal, FipsState
from byok.hsm.mechanisms import WrapMechanism, mechanism_name, wrap_mechanism_for
from byok.hsm.session import Hsm, HsmSession, MechanismInfo, TokenInfo, TrialWrap
from byok.hsm.softhsm import TokenInitResult, init_token

__all__ = [
    "CKR_NAMES",
    "FipsModeRefusal",
    "FipsState",
    "Hsm",
    "HsmSession",
    "MechanismInfo",
    "TokenInfo",
    "TokenInitResult",
    "TrialWrap",
    "WrapMechanism",
    "ckr_name",
    "init_token",
    "mechanism_name",
    "resolve_pin",
    "translate_error",
    "wrap_mechanism_for",
]
