"""SoftHSM2 configuration text and user PIN resolution."""

from __future__ import annotations

from pathlib import Path

import pytest

from byok.errors import ConfigError, SecretNotFound
from byok.hsm import resolve_pin
from byok.hsm.config import ensure_softhsm_conf, slots_mechanisms_value, softhsm_conf_text
from byok.secrets import write_secret_file

from .conftest import softhsm_settings


def test_slots_mechanisms_default_all() -> None:
    assert slots_mechanisms_value(None) == "ALL"
    assert slots_mechanisms_value("  ") == "ALL"


def test_slots_mechanisms_minus_becomes_own_entry() -> None:
    assert slots_mechanisms_value("-CKM_RSA_PKCS,CKM_RSA_X_509") == "-,CKM_RSA_PKCS,CKM_RSA_X_509"
    assert slots_mechanisms_value("-,CKM_RSA_PKCS") == "-,CKM_RSA_PKCS"
    assert (
        slots_mechanisms_value("CKM_RSA_PKCS_OAEP, CKM_AES_KEY_GEN")
        == "CKM_RSA_PKCS_OAEP,CKM_AES_KEY_GEN"
    )


def test_conf_text_settings(tmp_path: Path) -> None:
    lines = softhsm_conf_text(tmp_path, None).splitlines()

    assert f"directories.tokendir = {tmp_path.resolve() / 'softhsm2' / 'tokens'}" in lines
    assert "objectstore.backend = file" in lines
    assert "log.level = ERROR" in lines
    assert "slots.removable = false" in lines
    assert "slots.mechanisms = ALL" in lines


def test_ensure_conf_separate_file_per_restriction(tmp_path: Path) -> None:
    path = ensure_softhsm_conf(softhsm_settings(), tmp_path)
    assert "slots.mechanisms = ALL" in path.read_text()

    restricted = ensure_softhsm_conf(softhsm_settings(mechanisms="-CKM_RSA_PKCS"), tmp_path)

    assert restricted != path
    assert "slots.mechanisms = -,CKM_RSA_PKCS" in restricted.read_text()
    assert "slots.mechanisms = ALL" in path.read_text()
    token_dir = tmp_path / "softhsm2" / "tokens"
    assert f"directories.tokendir = {token_dir.resolve()}" in restricted.read_text()
    assert token_dir.stat().st_mode & 0o777 == 0o700


def test_ensure_conf_rewrites_on_change(tmp_path: Path) -> None:
    path = ensure_softhsm_conf(softhsm_settings(), tmp_path)
    path.write_text("directories.tokendir = /elsewhere\n")

    assert ensure_softhsm_conf(softhsm_settings(), tmp_path) == path
    assert "slots.mechanisms = ALL" in path.read_text()


def test_ensure_conf_rejects_unmanaged(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        ensure_softhsm_conf(softhsm_settings(managed=False), tmp_path)

    assert "managed" in raised.value.message


def test_resolve_pin_prefers_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = softhsm_settings(pin_env="BYOK_HSM_TEST_PIN")
    write_secret_file(tmp_path / settings.pin_file, "1111222233334444")
    monkeypatch.setenv("BYOK_HSM_TEST_PIN", "9999888877776666")

    assert resolve_pin(settings, tmp_path).reveal() == "9999888877776666"

    monkeypatch.delenv("BYOK_HSM_TEST_PIN")
    assert resolve_pin(settings, tmp_path).reveal() == "1111222233334444"


def test_resolve_pin_missing_names_both_places(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BYOK_HSM_TEST_PIN", raising=False)
    settings = softhsm_settings(pin_env="BYOK_HSM_TEST_PIN")

    with pytest.raises(SecretNotFound) as raised:
        resolve_pin(settings, tmp_path)

    assert "BYOK_HSM_TEST_PIN" in raised.value.message
    assert "softhsm-user-pin" in raised.value.message
