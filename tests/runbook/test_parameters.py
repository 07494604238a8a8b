"""Parameter and option checks that end a run with exit status 2 before anything is executed."""

from __future__ import annotations

from pathlib import Path

import pytest

from byok.runbook.parameters import RUNBOOK_PARAMETERS, check_parameters
from byok.runbook.runner import RunbookUsageError

from .conftest import NOTEBOOKS, run_byok


@pytest.fixture
def fresh(tmp_path: Path) -> tuple[Path, Path]:
    """An empty state directory and working directory, so any emulator or token a run starts would show."""
    state = tmp_path / "state"
    work = tmp_path / "work"
    state.mkdir(mode=0o700)
    work.mkdir()
    return state, work


@pytest.mark.parametrize(
    ("arguments", "message", "fix"),
    [
        (
            ["verify-cmk"],
            "parameter 'existing_key_id' is missing, and verify_cmk.ipynb requires it",
            "pass -p existing_key_id KEY_ID",
        ),
        (
            ["reimport"],
            "parameter 'previous_bundle' is missing, and reimport_key_material.ipynb requires it",
            "pass -p previous_bundle DIR",
        ),
        (
            ["reimport", "-p", "previous_bundle", "reports/20990101T000000Z-000000"],
            "parameter 'previous_bundle' = 'reports/20990101T000000Z-000000': folder {work}/reports/20990101T000000Z-000000 "
            "does not exist (relative paths are read from {work})",
            "pass -p previous_bundle DIR",
        ),
        (
            ["import", "-p", "wrapping_algorithm", "RSAES_OAEP_SHA_512"],
            "parameter 'wrapping_algorithm' = 'RSAES_OAEP_SHA_512' is invalid in import_key_material.ipynb",
            "use one of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSAES_PKCS1_V1_5",
        ),
        (
            ["import", "-p", "wrapping_algorithm", "rsaes_oaep_sha_256"],
            "parameter 'wrapping_algorithm' = 'rsaes_oaep_sha_256' is invalid in import_key_material.ipynb",
            "use one of RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, RSAES_PKCS1_V1_5",
        ),
        (
            ["import", "-p", "material_expiry_days", "-1"],
            "parameter 'material_expiry_days' = -1.0 is not a finite number of at least 0",
            "pass 0 for key material that never expires",
        ),
        (
            ["import", "-p", "material_expiry_days", "nan"],
            "parameter 'material_expiry_days' = nan is not a finite number of at least 0",
            "pass 0 for key material that never expires",
        ),
    ],
)
def test_invalid_parameter_stops_before_work(fresh: tuple[Path, Path], arguments: list[str], message: str, fix: str) -> None:
    state, work = fresh
    bundle = work / "bundle"
    message = message.format(work=work)

    completed = run_byok([*arguments, "--output", str(bundle)], state, work)

    assert completed.returncode == 2, completed.stdout
    assert completed.stdout.count(message) == 1, completed.stdout
    assert f"Fix: {fix}" in completed.stdout
    assert not bundle.exists()
    # The emulator (and so any CMK) and the SoftHSM token live under the state directory.
    assert list(state.iterdir()) == []


def test_previous_bundle_without_evidence_is_rejected(fresh: tuple[Path, Path]) -> None:
    state, work = fresh
    (work / "empty-folder").mkdir()

    completed = run_byok(["reimport", "-p", "previous_bundle", "empty-folder"], state, work)

    assert completed.returncode == 2, completed.stdout
    assert f"folder {work / 'empty-folder'} has no evidence.json" in completed.stdout
    assert list(state.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0.5", "'0.5' is not a valid integer"),
        ("0", "0 is not in the range x>=1"),
        ("-3", "-3 is not in the range x>=1"),
    ],
)
def test_execution_timeout_takes_whole_seconds(fresh: tuple[Path, Path], value: str, message: str) -> None:
    state, work = fresh

    completed = run_byok(["import", "--execution-timeout", value], state, work)

    assert completed.returncode == 2, completed.stdout
    assert message in completed.stdout
    assert "Traceback" not in completed.stdout
    assert list(state.iterdir()) == []


def test_relative_folder_resolves_against_base(tmp_path: Path) -> None:
    bundle = tmp_path / "reports" / "run-1"
    bundle.mkdir(parents=True)
    (bundle / "evidence.json").write_text("{}\n")

    checked = check_parameters("reimport_key_material", {"previous_bundle": "reports/run-1"}, base=tmp_path)

    assert checked["previous_bundle"] == str(bundle)


def test_kernel_check_requires_values() -> None:
    # In the kernel every parameter is passed, so an empty required value is an error there too.
    with pytest.raises(RunbookUsageError, match="'existing_key_id' is missing"):
        check_parameters("verify_cmk", {"existing_key_id": "", "aes_key_label": ""})


def test_rules_name_declared_parameters() -> None:
    import papermill

    shipped = Path(__file__).parents[2] / "runbooks"
    for runbook, rules in RUNBOOK_PARAMETERS.items():
        declared = papermill.inspect_notebook(str(shipped / f"{runbook}.ipynb"))
        for name in rules:
            assert name in declared, f"{runbook}.ipynb does not declare {name}"


def test_kernel_writes_no_ipython_history(fresh: tuple[Path, Path], tmp_path: Path) -> None:
    state, work = fresh
    home = tmp_path / "home"
    ipython_dir = tmp_path / "ipython"
    home.mkdir()
    marker = "CHG-history-marker-4711"

    run_byok(
        ["import", "--notebook", str(NOTEBOOKS / "emits_two_results.ipynb"), "--output", str(work / "bundle"), "-p", "label", marker],
        state,
        work,
        {"HOME": str(home), "IPYTHONDIR": str(ipython_dir)},
    )
    written = [path for folder in (home, ipython_dir) for path in folder.rglob("*") if path.is_file()]

    # IPython creates its profile folder on start: proof that the kernel used this IPYTHONDIR.
    assert (ipython_dir / "profile_default").is_dir()
    assert [path.name for path in written if path.name.startswith("history")] == []
    assert [path for path in written if marker.encode() in path.read_bytes()] == []
