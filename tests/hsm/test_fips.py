"""FIPS state: Luna policy reading through a stand-in library built from C, declared states, and the PKCS#1 v1.5 refusal."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from byok.errors import ConfigError
from byok.hsm import wrap_mechanism_for
from byok.hsm.fips import (
    SOURCE_DECLARED,
    SOURCE_READ,
    FipsModeRefusal,
    FipsState,
    check_wrap_allowed,
    declared_state,
    policy_state,
    read_luna_policies,
)
from byok.profile import project_root, resolve_module

STUB_SOURCE = project_root() / "fixtures" / "stub-luna" / "stub_luna.c"
STUB_SLOT = 3
STUB_ENV = ("STUB_LUNA_SLOT", "STUB_LUNA_CONTAINER", "STUB_LUNA_HSM_12", "STUB_LUNA_PARTITION_43")


@pytest.fixture(scope="module")
def stub_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in Luna library, compiled with the system C compiler (make installs gcc)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    assert compiler, "no C compiler found; 'make test' installs gcc and libc6-dev"
    target = tmp_path_factory.mktemp("stub-luna") / "libstubluna.so"
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o", str(target), str(STUB_SOURCE)],
        check=True,
    )
    return target


@pytest.fixture
def stub_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in STUB_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STUB_LUNA_SLOT", str(STUB_SLOT))
    return monkeypatch


@pytest.mark.parametrize(
    ("hsm_12", "partition_43", "fips_mode"),
    [("1", "1", False), ("0", "1", True), ("1", "0", True), ("0", "0", True)],
    ids=["both-allow-non-fips", "hsm-fips", "partition-fips", "both-fips"],
)
def test_policies_read_from_stub(
    stub_library: Path, stub_env: pytest.MonkeyPatch, hsm_12: str, partition_43: str, fips_mode: bool
) -> None:
    stub_env.setenv("STUB_LUNA_HSM_12", hsm_12)
    stub_env.setenv("STUB_LUNA_PARTITION_43", partition_43)
    stub_env.setenv("STUB_LUNA_CONTAINER", "9")

    policies = read_luna_policies(stub_library, STUB_SLOT)

    assert policies is not None
    assert policies.hsm_policy_12 == int(hsm_12)
    assert policies.partition_policy_43 == int(partition_43)
    assert policies.container == 9
    assert policies.errors == {}
    assert policies.fips_mode is fips_mode


def test_partition_policy_only(stub_library: Path, stub_env: pytest.MonkeyPatch) -> None:
    # A DPoD partition may not answer the HSM-level query.
    stub_env.setenv("STUB_LUNA_PARTITION_43", "0")

    policies = read_luna_policies(stub_library, STUB_SLOT)

    assert policies is not None
    assert policies.hsm_policy_12 is None
    assert policies.errors == {"CA_GetHSMPolicySetting(12)": "CKR_FUNCTION_NOT_SUPPORTED"}
    assert policies.fips_mode is True


def test_wrong_slot_reads_nothing(stub_library: Path, stub_env: pytest.MonkeyPatch) -> None:
    stub_env.setenv("STUB_LUNA_HSM_12", "0")
    stub_env.setenv("STUB_LUNA_PARTITION_43", "0")

    policies = read_luna_policies(stub_library, STUB_SLOT + 1)

    assert policies is not None
    assert policies.fips_mode is None
    assert policies.errors["CA_GetHSMPolicySetting(12)"] == "CKR_SLOT_ID_INVALID"
    assert policies.errors["CA_GetUserContainerNumber"] == "CKR_SLOT_ID_INVALID"


def test_policy_state_detect_on_luna(stub_library: Path, stub_env: pytest.MonkeyPatch) -> None:
    stub_env.setenv("STUB_LUNA_HSM_12", "1")
    stub_env.setenv("STUB_LUNA_PARTITION_43", "0")

    state = policy_state("luna", stub_library, lambda: STUB_SLOT, "detect")

    assert state is not None
    assert state.enabled is True
    assert state.source == SOURCE_READ
    assert state.as_dict()["partition policy 43 (Allow non-FIPS algorithms)"] == 0


def test_policy_state_unreadable_is_none(stub_library: Path, stub_env: pytest.MonkeyPatch) -> None:
    assert policy_state("dpod", stub_library, lambda: STUB_SLOT, "detect") is None


def test_module_without_luna_exports() -> None:
    softhsm = resolve_module("libsofthsm2.so")
    assert read_luna_policies(softhsm, 0) is None


def test_detect_elsewhere_needs_probe() -> None:
    def slot_never_read() -> int:
        raise AssertionError("the slot is only needed for Luna policies")

    assert policy_state("softhsm", "unused", slot_never_read, "detect") is None


@pytest.mark.parametrize(("setting", "enabled"), [("required", True), ("off", False)])
def test_declared_state(setting: str, enabled: bool) -> None:
    state = declared_state(setting)

    assert state is not None
    assert state.enabled is enabled
    assert state.source == SOURCE_DECLARED
    assert declared_state("detect") is None


def test_declared_state_rejects_unknown() -> None:
    with pytest.raises(ConfigError):
        declared_state("maybe")


def test_fips_refuses_pkcs1_v15() -> None:
    state = FipsState(True, SOURCE_DECLARED, "required", "declared")

    with pytest.raises(FipsModeRefusal) as raised:
        check_wrap_allowed(wrap_mechanism_for("RSAES_PKCS1_V1_5"), state, "byok-softhsm")

    assert "FIPS mode" in str(raised.value)
    assert "CKM_RSA_PKCS" in str(raised.value)
    assert "byok-softhsm" in str(raised.value)


@pytest.mark.parametrize("algorithm", ["RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"])
def test_fips_allows_oaep(algorithm: str) -> None:
    state = FipsState(True, SOURCE_DECLARED, "required", "declared")
    check_wrap_allowed(wrap_mechanism_for(algorithm), state, "byok-softhsm")


def test_non_fips_allows_pkcs1_v15() -> None:
    state = FipsState(False, SOURCE_DECLARED, "off", "declared")
    check_wrap_allowed(wrap_mechanism_for("RSAES_PKCS1_V1_5"), state, "byok-softhsm")
