"""Sealing a report folder: leak scan, ``SHA256SUMS``, ``report-signer.pem`` and ``SHA256SUMS.p7s``.

``seal_bundle`` serves every front end that writes a report folder (runbooks, certify).
It scans every file for every secret value the process has registered before anything is
signed. A hit raises ``SecretLeakFound`` and leaves the folder without ``SHA256SUMS`` and
its signature, so an unsigned folder is never mistaken for a sealed one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from byok.errors import ByokError
from byok.evidence.leaks import LeakHit, scan_paths
from byok.evidence.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SIGNER_CERTIFICATE_NAME,
    build_manifest,
    bundle_files,
)
from byok.evidence.signing import sign_detached
from byok.profile import Profile
from byok.secrets import known_secret_values

logger = logging.getLogger(__name__)


class SecretLeakFound(ByokError):
    """A bundle file contains a secret value; the bundle was not signed."""

    def __init__(self, hits: list[LeakHit]) -> None:
        listed = "; ".join(f"{Path(hit.path).name} contains the {hit.secret_name} ({hit.encoding})" for hit in hits)
        super().__init__(
            f"secret values found in the bundle, so it was not signed: {listed}",
            fix="find where the value was printed or stored and remove it; never pass secrets as notebook parameters",
        )
        self.hits = hits


@dataclass(frozen=True)
class SealResult:
    folder: Path
    files: list[str]
    files_scanned: int
    secrets_scanned: list[str]
    signer_subject: str
    signer_created: bool
    manifest_sha256: str


def scan_bundle(folder: Path, secrets: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Scan every file of ``folder`` for the secret values; raise SecretLeakFound on a hit.

    Returns the number of files read and the names (never the values) of the secrets searched for.
    """
    table = secrets if secrets is not None else known_secret_values()
    hits, scanned = scan_paths([folder], secrets=table)
    if hits:
        raise SecretLeakFound(hits)
    return scanned, sorted(set(table.values()))


def seal_bundle(
    folder: Path,
    profile: Profile,
    *,
    state_dir: Path,
    secrets: dict[str, str] | None = None,
) -> SealResult:
    """Scan, hash and sign ``folder`` with the profile's report signing key on its HSM.

    The signing key is found or created on the token under ``profile.report_signer_label``
    (see ``byok.hsm.signing.report_signer``). ``secrets`` defaults to every value registered
    through ``byok.secrets.Secret`` in this process, which includes the HSM PIN once the
    token is opened here.
    """
    from byok.evidence.records import sha256_hex
    from byok.hsm import Hsm, init_token, resolve_pin
    from byok.hsm.signing import report_signer

    folder = Path(folder)
    for stale in (MANIFEST_NAME, SIGNATURE_NAME):
        (folder / stale).unlink(missing_ok=True)

    if profile.hsm.family == "softhsm" and profile.hsm.managed:
        init_token(profile.hsm, state_dir)
    hsm = Hsm.open(profile.hsm, state_dir)
    pin = resolve_pin(profile.hsm, state_dir)
    with hsm.session(pin) as session:
        signer = report_signer(
            session, profile.report_signer_label, certificate_file=profile.report_signer_certificate
        )
        (folder / SIGNER_CERTIFICATE_NAME).write_bytes(signer.certificate_pem())

        # Scan after the PIN is registered and after every file, the certificate included, is written.
        scanned, secret_names = scan_bundle(folder, secrets)
        manifest = build_manifest(folder)
        signature = sign_detached(manifest, signer.certificate, signer.key)

    (folder / MANIFEST_NAME).write_bytes(manifest)
    (folder / SIGNATURE_NAME).write_bytes(signature)
    logger.info("Sealed %s: %d files signed by %s", folder, len(bundle_files(folder)), signer.certificate.subject.rfc4514_string())
    return SealResult(
        folder=folder,
        files=bundle_files(folder),
        files_scanned=scanned,
        secrets_scanned=secret_names,
        signer_subject=signer.certificate.subject.rfc4514_string(),
        signer_created=signer.created,
        manifest_sha256=sha256_hex(manifest),
    )


def cosign_bundle(folder: Path, certificate_file: Path, key_file: Path, passphrase: bytes | None) -> str:
    """Add a witness signature to the bundle's ``SHA256SUMS.p7s``; return the witness subject.

    The manifest must still match the folder, so a witness never signs a changed bundle.
    """
    from byok.evidence.manifest import check_manifest
    from byok.evidence.signing import add_cosignature, load_certificate_file, load_private_key_file

    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    signature_path = folder / SIGNATURE_NAME
    if not manifest_path.is_file() or not signature_path.is_file():
        raise ByokError(
            f"{folder} has no {MANIFEST_NAME} and {SIGNATURE_NAME}; only a sealed bundle can be co-signed",
            fix="co-sign the folder a successful 'byok import' wrote",
        )
    manifest = manifest_path.read_bytes()
    check = check_manifest(folder, manifest)
    if not check.intact:
        raise ByokError(
            f"{folder} no longer matches its {MANIFEST_NAME}: " + "; ".join(check.problems()),
            fix="co-sign only an unchanged bundle; run 'byok report verify' to see what changed",
        )
    certificate = load_certificate_file(certificate_file)
    key = load_private_key_file(key_file, passphrase)
    signature_path.write_bytes(add_cosignature(signature_path.read_bytes(), manifest, certificate, key))
    return certificate.subject.rfc4514_string()
