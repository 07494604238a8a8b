"""Fixtures for the byok.hsm tests: a real SoftHSM2 token in a temporary state directory.

SoftHSM2 reads SOFTHSM2_CONF only in C_Initialize; byok.hsm re-initializes the module
when a test needs another state directory, which works only while no session is open.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from byok.errors import ConfigError
from byok.hsm import Hsm, init_token, resolve_pin
from byok.profile import HsmSettings, resolve_module
from byok.secrets import Secret

# An environment variable no test run sets, so the PIN always comes from the PIN file.
UNSET_PIN_ENV = "BYOK_HSM_TEST_PIN_NEVER_SET"


def softhsm_settings(token_label: str = "byok-hsm-test", **changes: object) -> HsmSettings:
    settings = HsmSettings(
        family="softhsm",
        module="libsofthsm2.so",
        token_label=token_label,
        managed=True,
        pin_env=UNSET_PIN_ENV,
        pin_file="secrets/softhsm-user-pin",
        so_pin_file="secrets/softhsm-so-pin",
    )
    return replace(settings, **changes)


@dataclass(frozen=True)
class SoftHsmToken:
    settings: HsmSettings
    state_dir: Path
    pin: Secret
    hsm: Hsm


@pytest.fixture(scope="module")
def softhsm_module_available() -> None:
    try:
        resolve_module("libsofthsm2.so")
    except ConfigError as error:
        pytest.skip(f"SoftHSM2 is not installed: {error}")


@pytest.fixture(scope="module")
def softhsm_token(
    tmp_path_factory: pytest.TempPathFactory,
    softhsm_module_available: None,
    monkeypatch_module: pytest.MonkeyPatch,
) -> SoftHsmToken:
    monkeypatch_module.delenv(UNSET_PIN_ENV, raising=False)
    state_dir = tmp_path_factory.mktemp("state")
    settings = softhsm_settings()
    init_token(settings, state_dir)
    return SoftHsmToken(
        settings=settings,
        state_dir=state_dir,
        pin=resolve_pin(settings, state_dir),
        hsm=Hsm.open(settings, state_dir),
    )


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    patch = pytest.MonkeyPatch()
    yield patch
    patch.undo()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    """Stands in for the KMS wrapping key pair, whose private half KMS never reveals."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def unique_label(request: pytest.FixtureRequest) -> str:
    """A label prefix that no other test uses, so objects never collide."""
    return f"{request.node.name[:40]}-{uuid.uuid4().hex[:8]}"
