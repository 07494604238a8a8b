"""Secret leak scanning and log redaction.

Every ``byok.secrets.Secret`` registers its value. Before a report is kept or signed,
each artifact is searched for every registered value. The search also covers the
encodings in which a value can reappear: percent-encoded as in a URL query, base64, and
lower- and upper-case hex. A hit names the artifact and the secret's name, never the
value.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from byok.secrets import known_secret_values

# Short values (a 4-digit test PIN, say) would match unrelated text; they are still
# scanned but only in their literal form.
_MIN_VARIANT_LENGTH = 8
_REDACTED = "[REDACTED]"


@dataclass(frozen=True)
class LeakHit:
    path: str
    secret_name: str
    encoding: str


def secret_variants(value: str) -> dict[str, bytes]:
    """Return the encodings of ``value`` that a leak could take, keyed by encoding name."""
    raw = value.encode("utf-8")
    variants = {"literal": raw}
    if len(value) >= _MIN_VARIANT_LENGTH:
        variants["percent-encoded"] = quote(value, safe="-_.~").encode("ascii")
        variants["base64"] = base64.b64encode(raw).rstrip(b"=")
        variants["hex"] = raw.hex().encode("ascii")
        variants["HEX"] = raw.hex().upper().encode("ascii")
    return {name: data for name, data in variants.items() if data}


def scan_bytes(data: bytes, *, where: str, secrets: dict[str, str] | None = None) -> list[LeakHit]:
    hits: list[LeakHit] = []
    for value, name in (secrets if secrets is not None else known_secret_values()).items():
        for encoding, needle in secret_variants(value).items():
            if needle in data:
                hits.append(LeakHit(where, name, encoding))
                break
    return hits


def scan_paths(paths: Iterable[Path], *, secrets: dict[str, str] | None = None) -> tuple[list[LeakHit], int]:
    """Scan every file under ``paths``; return the hits and the number of files read."""
    table = secrets if secrets is not None else known_secret_values()
    hits: list[LeakHit] = []
    scanned = 0
    for root in paths:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            scanned += 1
            hits.extend(scan_bytes(path.read_bytes(), where=str(path), secrets=table))
    return hits, scanned


class RedactingFilter(logging.Filter):
    """Replace registered secret values in log records before any handler receives them."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secret_values()
        if not secrets:
            return True
        message = record.getMessage()
        redacted = message
        for value in secrets:
            for needle in secret_variants(value).values():
                text = needle.decode("ascii", errors="ignore") if needle.isascii() else value
                if text and text in redacted:
                    redacted = redacted.replace(text, _REDACTED)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def install_redaction(logger: logging.Logger | None = None) -> RedactingFilter:
    """Attach a RedactingFilter to the given logger's handlers and to the logger itself."""
    target = logger or logging.getLogger()
    redactor = RedactingFilter()
    target.addFilter(redactor)
    for handler in target.handlers:
        handler.addFilter(redactor)
    return redactor
