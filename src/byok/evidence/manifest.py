"""``SHA256SUMS``: the manifest of a bundle in the format ``sha256sum -c`` reads.

Each line is the lower-case hex SHA-256, two spaces (text mode marker of GNU coreutils,
which hashes the same bytes on Linux) and the path relative to the bundle folder with
``/`` separators. The manifest lists every file of the folder except itself and its
signature, sorted by path, so a missing or an extra file is detected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from byok.errors import ByokError

MANIFEST_NAME = "SHA256SUMS"
SIGNATURE_NAME = "SHA256SUMS.p7s"
SIGNER_CERTIFICATE_NAME = "report-signer.pem"
UNLISTED_NAMES = frozenset({MANIFEST_NAME, SIGNATURE_NAME})


class ManifestError(ByokError):
    """A manifest line is malformed or names a path outside the bundle."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(folder: Path) -> list[str]:
    """Return the relative paths of every file in ``folder`` except the manifest and its signature."""
    paths = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            raise ManifestError(
                f"{path} is a symbolic link; a bundle holds regular files only",
                fix="replace the link by a copy of the file",
            )
        if not path.is_file():
            continue
        relative = path.relative_to(folder).as_posix()
        if relative not in UNLISTED_NAMES:
            paths.append(relative)
    return paths


def build_manifest(folder: Path) -> bytes:
    """Return the SHA256SUMS text over every file of ``folder``."""
    lines = [f"{file_sha256(folder / relative)}  {relative}\n" for relative in bundle_files(folder)]
    return "".join(lines).encode("utf-8")


def write_manifest(folder: Path) -> Path:
    path = folder / MANIFEST_NAME
    path.write_bytes(build_manifest(folder))
    return path


def parse_manifest(text: bytes) -> dict[str, str]:
    """Parse SHA256SUMS into {relative path: hex digest}, rejecting paths that leave the folder."""
    entries: dict[str, str] = {}
    for number, line in enumerate(text.decode("utf-8").splitlines(), start=1):
        digest, separator, relative = line.partition("  ")
        if not separator:
            digest, separator, relative = line.partition(" *")
        if not separator or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ManifestError(
                f"{MANIFEST_NAME} line {number} is not '<sha256 hex>  <path>'",
                fix="regenerate the bundle; a manifest is never edited by hand",
            )
        if relative.startswith("/") or ".." in relative.split("/"):
            raise ManifestError(
                f"{MANIFEST_NAME} line {number} names {relative!r}, which is outside the bundle",
                fix="regenerate the bundle",
            )
        if relative in entries:
            raise ManifestError(f"{MANIFEST_NAME} lists {relative!r} twice", fix="regenerate the bundle")
        entries[relative] = digest
    return entries


@dataclass(frozen=True)
class ManifestCheck:
    """Result of comparing a folder with its manifest."""

    mismatched: list[str]
    missing: list[str]
    extra: list[str]
    checked: int

    @property
    def intact(self) -> bool:
        return not (self.mismatched or self.missing or self.extra)

    def problems(self) -> list[str]:
        return (
            [f"{name}: SHA-256 differs from {MANIFEST_NAME}" for name in self.mismatched]
            + [f"{name}: listed in {MANIFEST_NAME} but missing" for name in self.missing]
            + [f"{name}: present but not listed in {MANIFEST_NAME}" for name in self.extra]
        )


def check_manifest(folder: Path, manifest: bytes) -> ManifestCheck:
    """Compare every file of ``folder`` with the manifest text."""
    entries = parse_manifest(manifest)
    present = set(bundle_files(folder))
    mismatched = [
        relative
        for relative, digest in sorted(entries.items())
        if relative in present and file_sha256(folder / relative) != digest
    ]
    return ManifestCheck(
        mismatched=mismatched,
        missing=sorted(set(entries) - present),
        extra=sorted(present - set(entries)),
        checked=len(entries),
    )
