"""Evidence of a run: step records, leak scanning, and (later) manifests and signatures."""

from byok.evidence.leaks import LeakHit, RedactingFilter, install_redaction, scan_bytes, scan_paths
from byok.evidence.records import (
    BLOCKED,
    FAILED,
    INFORMATIONAL,
    PASSED,
    StepRecord,
    sha256_hex,
    utc_now,
)

__all__ = [
    "BLOCKED",
    "FAILED",
    "INFORMATIONAL",
    "PASSED",
    "LeakHit",
    "RedactingFilter",
    "StepRecord",
    "install_redaction",
    "scan_bytes",
    "scan_paths",
    "sha256_hex",
    "utc_now",
]
