"""Token lookup, token information, mechanisms, login and bootstrap on a real SoftHSM2 token."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import PyKCS11
import pytest

from byok.errors import HsmError
from byok.hsm import Hsm, init_token, resolve_pin
from byok.hsm.library import load_module
from byok.secrets import Secret

from .conftest import UNSET_PIN_ENV, SoftHsmToken, softhsm_settings


def test_token_found_by_label(softhsm_token: SoftHsmToken) -> None:
    info = softhsm_token.hsm.token_info()

    assert info.label == "byok-hsm-test"
    assert info.manufacturer_id == "SoftHSM project"
    assert info.library_manufacturer == "SoftHSM"
    assert info.cryptoki_version == "2.40"
    assert "CKF_TOKEN_INITIALIZED" in info.flag_names
    assert "CKF_USER_PIN_INITIALIZED" in info.flag_names
    assert info.serial_number


def test_missing_label_lists_found_labels(softhsm_token: SoftHsmToken) -> None:
    settings = softhsm_settings(token_label="no-such-token")

    with pytest.raises(HsmError) as raised:
        Hsm.open(settings, softhsm_token.state_dir)

    assert "'no-such-token'" in raised.value.message
    assert "'byok-hsm-test'" in raised.value.message
    assert "byok softhsm init" in raised.value.fix


def test_raw_mechanism_list_has_no_fake_entry(softhsm_token: SoftHsmToken) -> None:
    mechanisms = softhsm_token.hsm.raw_mechanism_list()

    assert 0x1D not in mechanisms
    assert PyKCS11.CKM_RSA_PKCS_OAEP in mechanisms
    assert PyKCS11.CKM_AES_KEY_GEN in mechanisms
    assert all(isinstance(mechanism, int) for mechanism in mechanisms)


def test_mechanism_info_by_name_and_number(softhsm_token: SoftHsmToken) -> None:
    by_name = softhsm_token.hsm.mechanism_info("CKM_RSA_PKCS_OAEP")
    by_number = softhsm_token.hsm.mechanism_info(PyKCS11.CKM_RSA_PKCS_OAEP)

    assert by_name == by_number
    assert "CKF_WRAP" in by_name.flag_names
    assert by_name.min_key_size <= 2048 <= by_name.max_key_size


def test_unknown_mechanism_info_translated(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(HsmError) as raised:
        softhsm_token.hsm.mechanism_info(PyKCS11.CKM_RSA_AES_KEY_WRAP)

    assert raised.value.ckr_name == "CKR_MECHANISM_INVALID"


def test_init_token_is_idempotent(softhsm_token: SoftHsmToken) -> None:
    serial = softhsm_token.hsm.token_info().serial_number

    result = init_token(softhsm_token.settings, softhsm_token.state_dir)

    assert result.created is False
    assert result.token_info.serial_number == serial
    assert resolve_pin(softhsm_token.settings, softhsm_token.state_dir) == softhsm_token.pin


def test_secret_files_mode_0600(softhsm_token: SoftHsmToken) -> None:
    for relative in (softhsm_token.settings.pin_file, softhsm_token.settings.so_pin_file):
        path = softhsm_token.state_dir / relative
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == 0o600, f"{relative} has mode {mode:04o}"
        assert path.read_text().isdigit()
        assert len(path.read_text()) == 16


def test_wrong_pin_rejected_without_leak(softhsm_token: SoftHsmToken) -> None:
    wrong = Secret("0000111122223333", "wrong test PIN")

    with pytest.raises(HsmError) as raised, softhsm_token.hsm.session(wrong):
        pass

    assert raised.value.ckr_name == "CKR_PIN_INCORRECT"
    assert raised.value.operation == "C_Login(CKU_USER)"
    assert "0000111122223333" not in raised.value.diagnostics()
    assert softhsm_token.pin.reveal() not in raised.value.diagnostics()


def test_session_closed_after_error(softhsm_token: SoftHsmToken) -> None:
    module = load_module(softhsm_token.hsm.module_path)

    with pytest.raises(RuntimeError), softhsm_token.hsm.session(softhsm_token.pin):
        assert module.open_sessions == 1
        raise RuntimeError("failure inside the session")

    assert module.open_sessions == 0
    assert sum(module.logins.values()) == 0
    with softhsm_token.hsm.session(softhsm_token.pin) as session:
        assert session.find_objects(label="nothing-has-this-label") == []


def test_nested_sessions_share_login(softhsm_token: SoftHsmToken) -> None:
    with softhsm_token.hsm.session(softhsm_token.pin) as outer:
        with softhsm_token.hsm.session(softhsm_token.pin):
            pass
        # The inner session's exit must not log out the outer one.
        outer.generate_aes_key("nested-session-check", b"\x07", token=False)
        assert outer.find_objects(label="nested-session-check", object_class="CKO_SECRET_KEY")


def test_pin_must_be_secret(softhsm_token: SoftHsmToken) -> None:
    with pytest.raises(TypeError), softhsm_token.hsm.session(softhsm_token.pin.reveal()):  # type: ignore[arg-type]
        pass


def test_restricted_mechanisms_through_conf(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    settings = softhsm_settings(token_label="byok-fips-test", mechanisms="-CKM_RSA_PKCS")

    init_token(settings, tmp_path)
    mechanisms = Hsm.open(settings, tmp_path).raw_mechanism_list()

    assert PyKCS11.CKM_RSA_PKCS not in mechanisms
    assert PyKCS11.CKM_RSA_PKCS_OAEP in mechanisms
    # The module switches back to the shared token's configuration for later tests.
    assert PyKCS11.CKM_RSA_PKCS in softhsm_token.hsm.raw_mechanism_list()


def test_conf_switch_refused_with_open_session(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    other = softhsm_settings(token_label="byok-other-test")

    with softhsm_token.hsm.session(softhsm_token.pin), pytest.raises(HsmError) as raised:
        Hsm.open(other, tmp_path)

    assert "still open" in raised.value.message


def test_token_created_by_other_process_found(tmp_path: Path, softhsm_token: SoftHsmToken) -> None:
    settings = softhsm_settings(token_label="byok-child-test")
    hsm = Hsm.attach(settings, tmp_path)
    with pytest.raises(HsmError):
        hsm.token_info()

    child = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from tests.hsm.conftest import softhsm_settings\n"
        "from byok.hsm import init_token\n"
        "result = init_token(softhsm_settings(token_label='byok-child-test'), Path(sys.argv[1]))\n"
        "print(json.dumps({'created': result.created, 'serial': result.token_info.serial_number}))\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != UNSET_PIN_ENV}
    completed = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=environment,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    reported = json.loads(completed.stdout.strip().splitlines()[-1])

    assert reported["created"] is True
    assert hsm.token_info().serial_number == reported["serial"]


def test_new_token_takes_pin_from_environment(
    tmp_path: Path, softhsm_token: SoftHsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = softhsm_settings(token_label="byok-env-pin-test", pin_env="BYOK_HSM_TEST_ENV_PIN")
    monkeypatch.setenv("BYOK_HSM_TEST_ENV_PIN", "5555666677778888")

    result = init_token(settings, tmp_path)

    assert result.created is True
    assert result.user_pin_source == "environment variable BYOK_HSM_TEST_ENV_PIN"
    assert not (tmp_path / settings.pin_file).exists()
    assert (tmp_path / settings.so_pin_file).exists()
    with Hsm.open(settings, tmp_path).session(Secret("5555666677778888", "test PIN")) as session:
        assert session.find_objects(object_class="CKO_SECRET_KEY") == []
