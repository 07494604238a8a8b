"""Offline verification of a bundle: every CMS signer, the trust anchors and every hash.

The signatures are checked with pyHanko's CMS validation (over asn1crypto and its own
certificate path validation), a code path separate from the cryptography builder that
signed them. pyHanko validates one SignerInfo at a time, so each signer is checked in a
copy of the SignedData that holds only that SignerInfo.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import cms
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.validation.generic_cms import async_validate_detached_cms
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleTrustManager

from byok.evidence.manifest import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    SIGNER_CERTIFICATE_NAME,
    ManifestCheck,
    ManifestError,
    check_manifest,
)
from byok.evidence.signing import SigningError, signed_data_of

logger = logging.getLogger(__name__)


@dataclass
class SignerResult:
    subject: str
    serial_number: str
    intact: bool
    valid: bool
    trusted: bool
    signing_time: str | None
    problem: str | None = None

    @property
    def passed(self) -> bool:
        return self.intact and self.valid and self.trusted


@dataclass
class BundleVerification:
    folder: Path
    signers: list[SignerResult] = field(default_factory=list)
    # Every problem found, signers' and files' included.
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    # None when SHA256SUMS is missing or cannot be parsed.
    manifest: ManifestCheck | None = None
    # Problems that belong to no single signer or file: a missing signature file, an unreadable
    # manifest, trust anchor or certificate.
    general_problems: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems and bool(self.signers) and all(signer.passed for signer in self.signers)

    def untrusted_signers(self) -> list[SignerResult]:
        """Return the signers whose signature is correct but whose certificate chains to no trust anchor."""
        return [signer for signer in self.signers if signer.intact and signer.valid and not signer.trusted]

    def verdict(self) -> str:
        """Summarise what passed and what failed.

        Example: "signatures: 1 of 2 signers not trusted: Common Name: Witness Two; files: all 7 match SHA256SUMS".
        """
        parts = list(self.general_problems)
        if self.signers:
            parts.append(self._signature_verdict())
        if self.manifest is not None:
            parts.append(self._files_verdict(self.manifest))
        return "; ".join(parts)

    def _signature_verdict(self) -> str:
        total = len(self.signers)
        untrusted = self.untrusted_signers()
        broken = [signer for signer in self.signers if not (signer.intact and signer.valid)]
        if not untrusted and not broken:
            return f"signatures: all {total} verified"
        findings = []
        if broken:
            findings.append(f"{len(broken)} of {total} signatures invalid: {', '.join(s.subject for s in broken)}")
        if untrusted:
            findings.append(f"{len(untrusted)} of {total} signers not trusted: {', '.join(s.subject for s in untrusted)}")
        return "signatures: " + ", ".join(findings)

    @staticmethod
    def _files_verdict(check: ManifestCheck) -> str:
        if check.intact:
            return f"files: all {check.checked} match {MANIFEST_NAME}"
        findings = []
        if check.mismatched:
            findings.append(f"{len(check.mismatched)} of {check.checked} differ from {MANIFEST_NAME}")
        if check.missing:
            findings.append(f"{len(check.missing)} listed in {MANIFEST_NAME} are missing")
        if check.extra:
            findings.append(f"{len(check.extra)} not listed in {MANIFEST_NAME}")
        return "files: " + ", ".join(findings)


def _load_trust_anchors(paths: list[Path]) -> list[asn1_x509.Certificate]:
    from asn1crypto import pem

    anchors = []
    for path in paths:
        data = path.read_bytes()
        if pem.detect(data):
            for _type, _headers, der in pem.unarmor(data, multiple=True):
                anchors.append(asn1_x509.Certificate.load(der))
        else:
            anchors.append(asn1_x509.Certificate.load(data))
    return anchors


def _single_signer(signed: cms.SignedData, index: int) -> cms.SignedData:
    return cms.SignedData(
        {
            "version": signed["version"],
            "digest_algorithms": signed["digest_algorithms"],
            "encap_content_info": signed["encap_content_info"],
            "certificates": signed["certificates"],
            "signer_infos": [signed["signer_infos"][index]],
        }
    )


def _signer_certificate(signed: cms.SignedData, signer_info: cms.SignerInfo) -> asn1_x509.Certificate | None:
    sid = signer_info["sid"]
    for choice in signed["certificates"]:
        certificate = choice.chosen
        if sid.name == "issuer_and_serial_number":
            if (
                certificate.issuer == sid.chosen["issuer"]
                and certificate.serial_number == sid.chosen["serial_number"].native
            ):
                return certificate
        elif certificate.key_identifier == sid.chosen.native:
            return certificate
    return None


def _certificate_signature_problems(signed: cms.SignedData, anchors: list[asn1_x509.Certificate]) -> list[str]:
    """Check the signature of every certificate embedded in the SignedData against its issuer.

    Path validation treats a certificate whose name and key match a trust anchor as the
    anchor itself and never checks its self-signature, so a changed byte in the embedded
    certificate's signature would go unnoticed without this check.
    """
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    embedded = [choice.chosen for choice in signed["certificates"] or []]
    issuers: dict[bytes, list[x509.Certificate]] = {}
    problems = []
    loaded_embedded = []
    for certificate in [*anchors, *embedded]:
        try:
            loaded = x509.load_der_x509_certificate(certificate.dump())
            loaded.public_key()
        except (ValueError, UnsupportedAlgorithm) as error:
            problems.append(f"a certificate of the bundle or the trust anchors cannot be read: {error}")
            continue
        issuers.setdefault(certificate.subject.dump(), []).append(loaded)
        if any(certificate is item for item in embedded):
            loaded_embedded.append((certificate, loaded))
    for certificate, loaded in loaded_embedded:
        candidates = issuers.get(certificate.issuer.dump(), [])
        verified = False
        for issuer in candidates:
            try:
                loaded.verify_directly_issued_by(issuer)
                verified = True
                break
            except (InvalidSignature, ValueError, TypeError):
                continue
        if candidates and not verified:
            problems.append(
                f"the certificate of {certificate.subject.human_friendly} in {SIGNATURE_NAME} has an invalid signature"
            )
    return problems


def _signing_time(signer_info: cms.SignerInfo) -> str | None:
    for attribute in signer_info["signed_attrs"] or []:
        if attribute["type"].native == "signing_time":
            return attribute["values"][0].native.isoformat()
    return None


async def _validate_signers(
    manifest: bytes, signed: cms.SignedData, anchors: list[asn1_x509.Certificate]
) -> list[SignerResult]:
    results = []
    for index, signer_info in enumerate(signed["signer_infos"]):
        certificate = _signer_certificate(signed, signer_info)
        subject = certificate.subject.human_friendly if certificate is not None else "unknown signer"
        serial = f"{certificate.serial_number:x}" if certificate is not None else "?"
        context = ValidationContext(
            trust_manager=SimpleTrustManager.build(trust_roots=anchors),
            allow_fetching=False,
            revocation_mode="soft-fail",
        )
        try:
            status = await async_validate_detached_cms(manifest, _single_signer(signed, index), signer_validation_context=context)
        except Exception as error:  # noqa: BLE001 - pyHanko raises several unrelated types for broken input
            results.append(SignerResult(subject, serial, False, False, False, _signing_time(signer_info), f"validation failed: {error}"))
            continue
        problem = None
        if not status.intact:
            problem = f"the signature does not match {MANIFEST_NAME}"
        elif not status.valid:
            problem = "the signature over the signed attributes is invalid"
        elif not status.trusted:
            problem = "the signer certificate does not chain to a trust anchor"
        results.append(
            SignerResult(subject, serial, bool(status.intact), bool(status.valid), bool(status.trusted), _signing_time(signer_info), problem)
        )
    return results


def _run_coroutine(coroutine):
    """Run a coroutine to completion, also from code that already runs in an event loop (a notebook kernel)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def verify_bundle(folder: Path, trust: list[Path] | None = None) -> BundleVerification:
    """Check the bundle in ``folder``; the result lists each signer and every problem found.

    Trust anchors are the bundle's own ``report-signer.pem`` plus ``trust``. The bundle's
    certificate proves only that the bundle is unchanged since signing. To know who signed,
    an auditor passes the certificate obtained separately with ``trust``.
    """
    folder = Path(folder)
    result = BundleVerification(folder)
    manifest_path = folder / MANIFEST_NAME
    signature_path = folder / SIGNATURE_NAME
    for required in (manifest_path, signature_path, folder / SIGNER_CERTIFICATE_NAME):
        if not required.is_file():
            _add_general_problem(result, f"{required.name} is missing; the bundle is not signed")
    if result.problems:
        return result

    manifest = manifest_path.read_bytes()
    try:
        check = check_manifest(folder, manifest)
    except ManifestError as error:
        _add_general_problem(result, error.message)
        return result
    result.manifest = check
    result.files_checked = check.checked
    result.problems.extend(check.problems())

    try:
        anchors = _load_trust_anchors([folder / SIGNER_CERTIFICATE_NAME, *(trust or [])])
    except (ValueError, TypeError) as error:
        _add_general_problem(result, f"a trust anchor is not a valid certificate: {error}")
        return result
    try:
        signed = signed_data_of(signature_path.read_bytes())
    except SigningError as error:
        _add_general_problem(result, error.message)
        return result
    for problem in _certificate_signature_problems(signed, anchors):
        _add_general_problem(result, problem)
    result.signers = _run_coroutine(_validate_signers(manifest, signed, anchors))
    for signer in result.signers:
        if signer.problem:
            result.problems.append(f"signer {signer.subject}: {signer.problem}")
    if not result.signers:
        _add_general_problem(result, f"{SIGNATURE_NAME} has no signer")
    return result


def _add_general_problem(result: BundleVerification, problem: str) -> None:
    result.problems.append(problem)
    result.general_problems.append(problem)


__all__ = ["BundleVerification", "SignerResult", "verify_bundle"]
