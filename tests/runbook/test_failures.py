"""Runs that must fail: a failing cell, a timed-out cell, an undeclared parameter, no parameters cell, no kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

from byok.runbook.runner import KernelUnavailable, probe_kernel

from .conftest import NOTEBOOKS, run_byok


def test_failing_cell_leaves_bundle_unsigned(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "fails"

    completed = run_byok(["import", "--notebook", str(NOTEBOOKS / "fails_in_second_cell.ipynb"), "--output", str(bundle)], state, work)

    assert completed.returncode == 1, completed.stdout
    assert 'raise RuntimeError("deliberate failure' in completed.stdout
    assert not (bundle / "SHA256SUMS.p7s").exists()
    assert (bundle / "evidence.json").is_file()


def test_failing_cell_error_printed_once(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "fails-once"

    completed = run_byok(["import", "--notebook", str(NOTEBOOKS / "fails_in_second_cell.ipynb"), "--output", str(bundle)], state, work)

    assert completed.returncode == 1, completed.stdout
    assert completed.stdout.count("RuntimeError: deliberate failure in the second cell") == 1, completed.stdout
    assert completed.stdout.count("left unsigned") == 1, completed.stdout
    assert "ERROR byok" not in completed.stdout


def test_timed_out_cell_leaves_bundle_unsigned(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "sleeps"

    completed = run_byok(
        [
            "import", "--notebook", str(NOTEBOOKS / "sleeps_past_timeout.ipynb"),
            "--output", str(bundle), "--execution-timeout", "2",
        ],
        state,
        work,
    )

    assert completed.returncode == 1, completed.stdout
    assert "timed out after 2 s" in completed.stdout
    assert "time.sleep(seconds)" in completed.stdout
    assert not (bundle / "SHA256SUMS.p7s").exists()


def test_undeclared_parameter_is_usage_error(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "undeclared"

    completed = run_byok(["import", "--output", str(bundle), "-p", "hsm_pin", "1234"], state, work)

    assert completed.returncode == 2, completed.stdout
    assert "parameter 'hsm_pin' is not declared" in completed.stdout
    assert not (bundle / "SHA256SUMS.p7s").exists()


def test_notebook_without_parameters_cell_is_usage_error(workspace: tuple[Path, Path]) -> None:
    state, work = workspace

    completed = run_byok(["import", "--notebook", str(NOTEBOOKS / "has_no_parameters_cell.ipynb")], state, work)

    assert completed.returncode == 2, completed.stdout
    assert "no cell tagged 'parameters'" in completed.stdout


def test_mistyped_parameter_is_usage_error(workspace: tuple[Path, Path]) -> None:
    state, work = workspace

    completed = run_byok(["import", "-p", "material_expiry_days", "soon"], state, work)

    assert completed.returncode == 2, completed.stdout
    assert "'material_expiry_days' = 'soon' is not a valid float" in completed.stdout


def test_unknown_kernel_lists_available_kernels() -> None:
    with pytest.raises(KernelUnavailable) as raised:
        probe_kernel("byok-kernel-that-does-not-exist", start_timeout=10)

    assert "Kernels available:" in raised.value.message
    assert "pip install -e ." in raised.value.fix


def test_printed_pin_leaves_bundle_unsigned(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "leaks"

    completed = run_byok(["import", "--notebook", str(NOTEBOOKS / "prints_the_pin.ipynb"), "--output", str(bundle)], state, work)
    pin = (state / "secrets" / "softhsm-user-pin").read_text().strip()

    assert completed.returncode == 1, completed.stdout
    assert "prints_the_pin.ipynb contains the user PIN of token byok-softhsm" in completed.stdout
    assert pin not in completed.stdout
    assert not (bundle / "SHA256SUMS.p7s").exists()
    assert not (bundle / "SHA256SUMS").exists()


def test_parameter_read_back_disagrees(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "disagrees"

    completed = run_byok(
        ["import", "--notebook", str(NOTEBOOKS / "reports_other_parameter.ipynb"), "--output", str(bundle), "-p", "label", "requested"],
        state,
        work,
    )

    assert completed.returncode == 1, completed.stdout
    assert "parameter 'label': the runbook used 'not what was requested', requested 'requested'" in completed.stdout
    assert not (bundle / "SHA256SUMS.p7s").exists()


def test_two_result_bundles_fail(workspace: tuple[Path, Path]) -> None:
    state, work = workspace
    bundle = work / "two-results"

    completed = run_byok(["import", "--notebook", str(NOTEBOOKS / "emits_two_results.ipynb"), "--output", str(bundle)], state, work)

    assert completed.returncode == 1, completed.stdout
    assert "emitted 2 application/vnd.byok.result+json bundles, expected exactly 1" in completed.stdout
    assert not (bundle / "SHA256SUMS.p7s").exists()
