"""Store durability: kill -9 in the middle of imports and encrypts, restart, and lose nothing acknowledged.

SQLite runs in WAL mode with synchronous=NORMAL, and each state change is one
transaction, so a commit survives the death of the process (the OS keeps the written
WAL pages). A power loss could still drop the last commits; this test covers process
crashes only.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from pathlib import Path

from byok.emulator.process import EmulatorProcess
from tests.emulator.sdk import make_client
from tests.emulator.test_import import create_external_key, import_material, import_parameters, wrap

ALLOWED_STATES = {"Enabled", "Disabled", "PendingImport", "PendingDeletion"}
ACKNOWLEDGED_IMPORTS_BEFORE_KILL = 4


@dataclass
class Acknowledged:
    imported: dict[str, bytes] = field(default_factory=dict)
    ciphertexts: list[tuple[str, str, str]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    enough: threading.Event = field(default_factory=threading.Event)
    stopped_by: BaseException | None = None


def drive(emulator: EmulatorProcess, acknowledged: Acknowledged) -> None:
    """Import and encrypt in a loop until the server dies; record only what returned 200."""
    client = make_client("old-sdk", emulator)
    index = 0
    try:
        while True:
            key_id = create_external_key(client)
            acknowledged.created.append(key_id)
            material = os.urandom(32)
            parameters = import_parameters(client, key_id, "RSAES_OAEP_SHA_1")
            import_material(client, key_id, parameters, wrap(parameters["PublicKey"], "RSAES_OAEP_SHA_1", material))
            acknowledged.imported[key_id] = material
            for _ in range(5):
                plaintext = f"record {index}"
                index += 1
                blob = client.call("Encrypt", {"KeyId": key_id, "Plaintext": plaintext})["CiphertextBlob"]
                acknowledged.ciphertexts.append((key_id, blob, plaintext))
            if len(acknowledged.imported) >= ACKNOWLEDGED_IMPORTS_BEFORE_KILL:
                acknowledged.enough.set()
    except BaseException as error:  # the connection fails once the server is killed
        acknowledged.stopped_by = error
        acknowledged.enough.set()


def test_kill_nine_loses_no_acknowledged_change(tmp_path: Path) -> None:
    emulator = EmulatorProcess(tmp_path / "emulator")
    emulator.start()
    acknowledged = Acknowledged()
    worker = threading.Thread(target=drive, args=(emulator, acknowledged), daemon=True)
    try:
        worker.start()
        assert acknowledged.enough.wait(timeout=120), "the driver made no progress"
        assert acknowledged.stopped_by is None, f"the driver failed before the kill: {acknowledged.stopped_by!r}"
        os.kill(emulator.pid, signal.SIGKILL)
        worker.join(timeout=60)
        assert not worker.is_alive()
        assert acknowledged.stopped_by is not None
    finally:
        emulator.stop()

    with EmulatorProcess(tmp_path / "emulator") as restarted:
        client = make_client("tea-acs3", restarted)
        for key_id in acknowledged.imported:
            state = client.call("DescribeKey", {"KeyId": key_id})["KeyMetadata"]["KeyState"]
            assert state == "Enabled", key_id
        for key_id, blob, plaintext in acknowledged.ciphertexts:
            decrypted = client.call("Decrypt", {"CiphertextBlob": blob})
            assert decrypted["KeyId"] == key_id
            assert decrypted["Plaintext"] == plaintext
        listed = client.call("ListKeys", {"PageSize": 100})["Keys"]["Key"]
        listed_ids = {key["KeyId"] for key in listed}
        assert set(acknowledged.created) <= listed_ids
        for key in listed:
            state = client.call("DescribeKey", {"KeyId": key["KeyId"]})["KeyMetadata"]["KeyState"]
            assert state in ALLOWED_STATES, key["KeyId"]
