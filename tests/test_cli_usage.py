"""Usage errors of the byok command: exit status 2 and a message naming the value and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def byok(*args: str, state: Path) -> subprocess.CompletedProcess:
    environment = dict(os.environ, BYOK_STATE_DIR=str(state))
    return subprocess.run(
        [sys.executable, "-m", "byok.cli", *args], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def test_unknown_profile_exits_2(tmp_path) -> None:
    result = byok("certify", "--profile", "no-such-profile", "--output", str(tmp_path / "out"), state=tmp_path)
    assert result.returncode == 2
    assert "no-such-profile" in result.stderr
    assert "softhsm-emulator" in result.stderr


def test_invalid_wrapping_algorithm_exits_2(tmp_path) -> None:
    result = byok("certify", "--wrapping-algorithm", "RSAES_OAEP_SHA_512", "--output", str(tmp_path / "out"), state=tmp_path)
    assert result.returncode == 2
    assert "RSAES_OAEP_SHA_512" in result.stderr
    assert "RSAES_OAEP_SHA_256" in result.stderr


def test_profile_with_typo_exits_2(tmp_path) -> None:
    profile = tmp_path / "typo.toml"
    profile.write_text(
        'name = "typo"\n[hsm]\nfamily = "softhsm"\nmodule = "libsofthsm2.so"\ntoken_label = "t"\n'
        '[kms]\nendpoint = "emulator"\nregion = "cn-hangzhou"\nwrapping_algoritm = "RSAES_OAEP_SHA_1"\n'
    )
    result = byok("certify", "--profile", str(profile), "--output", str(tmp_path / "out"), state=tmp_path)
    assert result.returncode == 2
    assert "wrapping_algoritm" in result.stderr


def test_existing_output_needs_force(tmp_path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "old.txt").write_text("earlier run")
    result = byok("certify", "--output", str(output), state=tmp_path)
    assert result.returncode == 2
    assert "--force" in result.stderr


def test_missing_hsm_module_exits_2(tmp_path) -> None:
    result = byok("certify", "--profile", "luna-aliyun", "--output", str(tmp_path / "out"), state=tmp_path)
    assert result.returncode == 2, result.stdout[-2000:]
    assert "libCryptoki2_64.so" in result.stderr
    assert not (tmp_path / "out" / "allure-results").exists()


def test_fips_profile_rejects_pkcs1(tmp_path) -> None:
    result = byok(
        "certify", "--profile", "softhsm-fips", "--wrapping-algorithm", "RSAES_PKCS1_V1_5",
        "--output", str(tmp_path / "out"), state=tmp_path,
    )
    assert result.returncode == 2, result.stdout[-2000:]
    assert "FIPS" in result.stderr
    assert "RSAES_OAEP_SHA_256" in result.stderr


def test_live_profile_without_access_key_exits_2(tmp_path) -> None:
    profile = tmp_path / "live.toml"
    profile.write_text(
        'name = "live"\n[hsm]\nfamily = "softhsm"\nmodule = "libsofthsm2.so"\ntoken_label = "t"\nmanaged = true\n'
        'pin_file = "secrets/softhsm-user-pin"\nso_pin_file = "secrets/softhsm-so-pin"\n'
        '[kms]\nendpoint = "kms.cn-hangzhou.aliyuncs.com"\nregion = "cn-hangzhou"\n'
        'access_key_id_env = "BYOK_TEST_ABSENT_AK_ID"\naccess_key_secret_env = "BYOK_TEST_ABSENT_AK_SECRET"\n'
    )
    result = byok("certify", "--profile", str(profile), "--output", str(tmp_path / "out"), state=tmp_path)
    assert result.returncode == 2
    assert "BYOK_TEST_ABSENT_AK_ID" in result.stderr


def test_bad_command_line_algorithm_named(tmp_path) -> None:
    result = byok("certify", "--wrapping-algorithm", "RSAES_OAEP_SHA256", "--output", str(tmp_path / "out"), state=tmp_path)
    assert result.returncode == 2
    assert "--wrapping-algorithm 'RSAES_OAEP_SHA256'" in result.stderr
    assert "softhsm-emulator.toml" not in result.stderr


def test_force_refuses_foreign_files(tmp_path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "summary.json").write_text("{}")
    (output / "extra-note.txt").write_text("not written by byok")
    result = byok("certify", "--output", str(output), "--force", state=tmp_path)
    assert result.returncode == 2
    assert "extra-note.txt" in result.stderr
    assert (output / "summary.json").read_text() == "{}"


def test_force_keeps_earlier_run_on_usage_error(tmp_path) -> None:
    output = tmp_path / "out"
    output.mkdir()
    (output / "SHA256SUMS").write_text("earlier run\n")
    result = byok("certify", "--profile", "luna-aliyun", "--output", str(output), "--force", state=tmp_path)
    assert result.returncode == 2
    assert (output / "SHA256SUMS").read_text() == "earlier run\n"


def test_reserved_pytest_option_rejected(tmp_path) -> None:
    result = byok("certify", "--output", str(tmp_path / "out"), "--", "--wrapping-algorithm", "RSAES_PKCS1_V1_5", state=tmp_path)
    assert result.returncode == 2
    assert "--wrapping-algorithm" in result.stderr
    assert not (tmp_path / "out").exists()
