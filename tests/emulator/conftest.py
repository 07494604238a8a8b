"""Fixtures that run the KMS emulator as a real subprocess on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import SDK_MODES, make_client


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """One emulator for tests that neither move its clock nor restart it."""
    with EmulatorProcess(tmp_path_factory.mktemp("emulator-shared")) as emulator:
        yield emulator


@pytest.fixture
def own_emulator(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """A private emulator, for tests that advance the clock or restart the server."""
    with EmulatorProcess(tmp_path / "emulator") as emulator:
        yield emulator


@pytest.fixture(params=SDK_MODES)
def sdk_mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def client(sdk_mode: str, shared_emulator: EmulatorProcess):
    return make_client(sdk_mode, shared_emulator)
