"""``byok import`` and ``byok reimport`` end to end on the default profile, checked as an auditor would."""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from byok.emulator.process import EmulatorProcess
from byok.evidence.leaks import secret_variants
from byok.evidence.verify import verify_bundle

from .conftest import openssl_verify, run_byok, sha256sum_check

WITNESS_PASSPHRASE = "witness passphrase for the test"


@pytest.fixture(scope="module")
def imported(workspace: tuple[Path, Path]) -> tuple[Path, Path]:
    """One import with a short material expiry; returns (state directory, bundle folder)."""
    state, work = workspace
    bundle = work / "import-bundle"
    completed = run_byok(
        [
            "import", "--output", str(bundle),
            "-p", "operator", "Operator One",
            "-p", "witnesses", "Witness Two:security officer",
            "-p", "change_ticket", "CHG-0001",
            "-p", "material_expiry_days", "0.005",
        ],
        state,
        work,
    )
    assert completed.returncode == 0, completed.stdout
    return state, bundle


@pytest.fixture(scope="module")
def reimported(imported: tuple[Path, Path], workspace: tuple[Path, Path]) -> tuple[Path, str]:
    """The re-import after the emulator clock moved two days, far past the material expiry (7.2 minutes).

    Two days ahead, a token lifetime or material expiry judged by this machine's clock
    instead of the KMS's Date header would be off by 48 hours and fail the run. The earlier
    bundle is named relative to the working directory, as an operator types it.
    """
    state, first = imported
    _, work = workspace
    clock = run_byok(["emulator", "clock", "--data-dir", str(state / "emulator"), "--advance", "2d"], state, work)
    assert clock.returncode == 0, clock.stdout
    bundle = work / "reimport-bundle"
    previous = str(first.relative_to(work))
    completed = run_byok(["reimport", "--output", str(bundle), "-p", "previous_bundle", previous], state, work)
    return bundle, completed.stdout + f"\nexit status {completed.returncode}"


def evidence(bundle: Path) -> dict:
    return json.loads((bundle / "evidence.json").read_text())


def test_import_bundle_has_every_artifact(imported: tuple[Path, Path]) -> None:
    _, bundle = imported
    names = sorted(path.name for path in bundle.iterdir())

    assert names == [
        "SHA256SUMS",
        "SHA256SUMS.p7s",
        "evidence.html",
        "evidence.json",
        "import_key_material.html",
        "import_key_material.ipynb",
        "report-signer.pem",
    ]


def test_import_bundle_passes_auditor_commands(imported: tuple[Path, Path], workspace: tuple[Path, Path]) -> None:
    state, bundle = imported
    _, work = workspace

    cms = openssl_verify(bundle)
    sums = sha256sum_check(bundle)
    verify = run_byok(["report", "verify", str(bundle)], state, work)

    assert cms.returncode == 0, cms.stderr
    assert sums.returncode == 0, sums.stdout
    assert verify.returncode == 0, verify.stdout
    assert "byok report signer" in verify.stdout


def test_import_evidence_records_ceremony(imported: tuple[Path, Path]) -> None:
    _, bundle = imported
    record = evidence(bundle)

    assert record["run"]["verdict"] == "passed"
    assert len(record["run"]["runbook SHA-256 before execution"]) == 64
    assert record["people"][0] == {"name": "Operator One", "role": "operator", "identity": "declared"}
    assert record["people"][1]["role"] == "security officer"
    assert record["run"]["warnings"] == []
    assert record["split_knowledge"]["applicable"] is False
    assert record["aes_key"]["attributes"]["CKA_SENSITIVE"] is True
    assert record["aes_key"]["key check value"] == record["aes_key"]["attributes"]["CKA_CHECK_VALUE"]
    assert record["wrapping"]["verdict"] == "acceptable"
    assert record["import"]["wrapped blob length (bytes)"] == 256
    assert record["kms"]["KeyState after import"] == "Enabled"
    assert record["kms"]["calling_principal"].startswith("root account ")
    assert record["checks"]["round trip"]["result"] == "passed"
    assert record["checks"]["binding proof"]["result"] == "passed"
    assert record["secret_scan"]["found"] == "nothing"
    assert [step["result"] for step in record["steps"]] == ["passed"] * len(record["steps"])
    assert {step["step"] for step in record["steps"]} >= {"create_external_key", "wrap_aes_key", "import_key_material"}


def test_import_result_bundle_reads_back(imported: tuple[Path, Path]) -> None:
    _, bundle = imported
    book = nbformat.read(bundle / "import_key_material.ipynb", as_version=4)
    results = [
        output["data"]["application/vnd.byok.result+json"]
        for cell in book.cells
        for output in cell.get("outputs", [])
        if "application/vnd.byok.result+json" in output.get("data", {})
    ]

    assert len(results) == 1
    assert results[0]["parameters"]["change_ticket"] == "CHG-0001"
    assert results[0]["parameters"]["material_expiry_days"] == 0.005
    assert results[0]["verdict"] == "passed"


def test_html_has_no_external_urls(imported: tuple[Path, Path]) -> None:
    _, bundle = imported
    for name in ("evidence.html", "import_key_material.html"):
        text = (bundle / name).read_text()
        assert "http://" not in text, name
        assert "https://" not in text, name


def _known_secrets(state: Path) -> dict[str, str]:
    values = {
        "user PIN": (state / "secrets" / "softhsm-user-pin").read_text().strip(),
        "SO PIN": (state / "secrets" / "softhsm-so-pin").read_text().strip(),
        "emulator AccessKey secret": (state / "secrets" / "emulator-root-access-key-secret").read_text().strip(),
    }
    with EmulatorProcess(
        data_dir=state / "emulator", secret_file=state / "secrets" / "emulator-root-access-key-secret"
    ) as emulator:
        values["AccessKey id"] = emulator.access_key_id
    for stored in (state / "ciphertexts").rglob("*.json"):
        values[f"ciphertext {stored.name}"] = json.loads(stored.read_text())["ciphertext_blob"]
    return values


def test_bundle_holds_no_secret(imported: tuple[Path, Path]) -> None:
    state, bundle = imported
    secrets = _known_secrets(state)

    for path in sorted(bundle.iterdir()):
        data = path.read_bytes()
        for name, value in secrets.items():
            for encoding, needle in secret_variants(value).items():
                assert needle not in data, f"{path.name} contains the {name} ({encoding})"


def test_notebook_metadata_holds_no_secret_parameter(imported: tuple[Path, Path]) -> None:
    _, bundle = imported
    book = nbformat.read(bundle / "import_key_material.ipynb", as_version=4)
    recorded = book.metadata["papermill"]["parameters"]

    assert set(recorded) == {"operator", "witnesses", "change_ticket", "material_expiry_days", "profile"}


@pytest.mark.parametrize(
    "name",
    ["SHA256SUMS", "SHA256SUMS.p7s", "evidence.html", "evidence.json", "import_key_material.html",
     "import_key_material.ipynb", "report-signer.pem"],
)
def test_one_changed_byte_fails_verification(imported: tuple[Path, Path], tmp_path: Path, name: str) -> None:
    _, bundle = imported
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    data = bytearray((copy / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / name).write_bytes(bytes(data))

    cms = openssl_verify(copy)
    sums = sha256sum_check(copy)

    # openssl checks the signature over SHA256SUMS and sha256sum checks the files it lists,
    # so the auditor's two commands together catch a change in any file.
    assert cms.returncode != 0 or sums.returncode != 0
    if name in ("SHA256SUMS", "SHA256SUMS.p7s", "report-signer.pem"):
        assert cms.returncode != 0
    if name not in ("SHA256SUMS", "SHA256SUMS.p7s"):
        # A changed SHA256SUMS can leave a line sha256sum only warns about (exit 0 without
        # --strict); openssl rejects that change.
        assert sums.returncode != 0
    result = verify_bundle(copy)
    assert not result.intact
    if name not in ("SHA256SUMS", "SHA256SUMS.p7s", "report-signer.pem"):
        assert f"files: 1 of {result.files_checked} differ from SHA256SUMS" in result.verdict()


def test_extra_file_fails_verification(imported: tuple[Path, Path], tmp_path: Path) -> None:
    _, bundle = imported
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "notes.txt").write_text("added after signing\n")

    result = verify_bundle(copy)

    assert not result.intact
    assert "notes.txt: present but not listed in SHA256SUMS" in result.problems
    assert result.verdict() == "signatures: all 1 verified; files: 1 not listed in SHA256SUMS"


def _witness_files(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Witness Two")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_file = folder / "witness-key.pem"
    cert_file = folder / "witness.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(WITNESS_PASSPHRASE.encode()),
        )
    )
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def test_witness_cosignature_verifies(imported: tuple[Path, Path], workspace: tuple[Path, Path], tmp_path: Path) -> None:
    state, bundle = imported
    _, work = workspace
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    key_file, cert_file = _witness_files(tmp_path)

    cosign = run_byok(
        ["report", "cosign", str(copy), "--key", str(key_file), "--cert", str(cert_file), "--passphrase-env", "WITNESS_KEY_PASSPHRASE"],
        state,
        work,
        {"WITNESS_KEY_PASSPHRASE": WITNESS_PASSPHRASE},
    )
    trusted = run_byok(["report", "verify", str(copy), "--trust", str(cert_file)], state, work)
    untrusted = run_byok(["report", "verify", str(copy)], state, work)
    (tmp_path / "anchors.pem").write_bytes((copy / "report-signer.pem").read_bytes() + cert_file.read_bytes())

    assert cosign.returncode == 0, cosign.stdout
    assert WITNESS_PASSPHRASE not in cosign.stdout
    assert trusted.returncode == 0, trusted.stdout
    assert "Witness Two" in trusted.stdout
    assert "byok report signer" in trusted.stdout
    files = len((copy / "SHA256SUMS").read_text().splitlines())
    assert untrusted.returncode == 1
    assert f"signatures: 1 of 2 signers not trusted: Common Name: Witness Two; files: all {files} match SHA256SUMS" in untrusted.stdout
    assert "--trust WITNESS.pem" in untrusted.stdout
    assert "NOT intact" not in untrusted.stdout
    assert openssl_verify(copy, str(tmp_path / "anchors.pem")).returncode == 0
    assert sha256sum_check(copy).returncode == 0


def test_cosign_rejects_changed_bundle(imported: tuple[Path, Path], workspace: tuple[Path, Path], tmp_path: Path) -> None:
    state, bundle = imported
    _, work = workspace
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    (copy / "evidence.json").write_text("{}\n")
    key_file, cert_file = _witness_files(tmp_path)

    cosign = run_byok(
        ["report", "cosign", str(copy), "--key", str(key_file), "--cert", str(cert_file), "--passphrase-env", "WITNESS_KEY_PASSPHRASE"],
        state,
        work,
        {"WITNESS_KEY_PASSPHRASE": WITNESS_PASSPHRASE},
    )

    assert cosign.returncode == 1
    assert "evidence.json: SHA-256 differs" in cosign.stdout


def test_reimport_restores_cmk(imported: tuple[Path, Path], reimported: tuple[Path, str]) -> None:
    _, first = imported
    bundle, output = reimported
    record = evidence(bundle)

    assert "exit status 0" in output, output
    assert record["kms"]["KeyId"] == evidence(first)["kms"]["KeyId"]
    assert record["kms"]["KeyState before import"] == "PendingImport"
    assert record["kms"]["KeyState after import"] == "Enabled"
    assert record["checks"]["earlier ciphertext"]["result"] == "passed"
    assert record["checks"]["same key as the earlier bundle"]["result"] == "passed"


def test_reimport_links_earlier_bundle(imported: tuple[Path, Path], reimported: tuple[Path, str]) -> None:
    _, first = imported
    bundle, _ = reimported
    record = evidence(bundle)
    expected = hashlib.sha256((first / "SHA256SUMS").read_bytes()).hexdigest()

    assert record["previous_bundle"]["SHA256SUMS SHA-256"] == expected
    assert record["run"]["requested parameters"]["previous_bundle"] == str(first.resolve())
    assert record["previous_bundle"]["run id"] == evidence(first)["run"]["id"]
    assert openssl_verify(bundle).returncode == 0
    assert sha256sum_check(bundle).returncode == 0


def test_verify_cmk_after_reimport(imported: tuple[Path, Path], reimported: tuple[Path, str], workspace: tuple[Path, Path]) -> None:
    state, first = imported
    _, work = workspace
    bundle = work / "verify-bundle"
    record = evidence(first)

    completed = run_byok(
        [
            "verify-cmk", "--output", str(bundle),
            "-p", "existing_key_id", record["kms"]["KeyId"],
            "-p", "aes_key_label", record["aes_key"]["label"],
        ],
        state,
        work,
    )
    checks = evidence(bundle)["checks"]

    assert completed.returncode == 0, completed.stdout
    assert checks["round trip"]["result"] == "passed"
    assert checks["binding proof"]["result"] == "passed"
    assert openssl_verify(bundle).returncode == 0
