"""Two emulator processes on one data directory see each other's committed changes.

Each process caches keys, key versions, AccessKeys and RAM permissions in memory, and
drops those caches when SQLite reports a commit by another connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import KmsCallFailed, make_client


@pytest.fixture
def two_emulators(tmp_path: Path) -> Iterator[tuple[EmulatorProcess, EmulatorProcess]]:
    data_dir = tmp_path / "emulator"
    with EmulatorProcess(data_dir) as first, EmulatorProcess(
        data_dir, ready_file=tmp_path / "second-ready.json", log_file=tmp_path / "second.log"
    ) as second:
        yield first, second


def test_state_change_seen_by_other_process(two_emulators: tuple[EmulatorProcess, EmulatorProcess]) -> None:
    first, second = two_emulators
    client_first = make_client("old-sdk", first)
    client_second = make_client("old-sdk", second)
    key_id = client_first.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    # Fills the first process's caches with the Enabled key and its cipher.
    blob = client_first.call("Encrypt", {"KeyId": key_id, "Plaintext": "cached"})["CiphertextBlob"]

    client_second.call("DisableKey", {"KeyId": key_id})

    with pytest.raises(KmsCallFailed) as encrypt_failure:
        client_first.call("Encrypt", {"KeyId": key_id, "Plaintext": "after disable"})
    assert encrypt_failure.value.code == "Rejected.Disabled"
    with pytest.raises(KmsCallFailed) as decrypt_failure:
        client_first.call("Decrypt", {"CiphertextBlob": blob})
    assert decrypt_failure.value.code == "Rejected.Disabled"

    client_second.call("EnableKey", {"KeyId": key_id})
    assert client_first.call("Decrypt", {"CiphertextBlob": blob})["Plaintext"] == "cached"


def test_scheduled_deletion_seen_by_other_process(two_emulators: tuple[EmulatorProcess, EmulatorProcess]) -> None:
    first, second = two_emulators
    client_first = make_client("old-sdk", first)
    client_second = make_client("old-sdk", second)
    key_id = client_first.call("CreateKey", {})["KeyMetadata"]["KeyId"]
    assert client_first.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["KeyState"] == "Enabled"

    client_second.call("ScheduleKeyDeletion", {"KeyId": key_id, "PendingWindowInDays": "7"})

    assert client_first.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["KeyState"] == "PendingDeletion"
