"""The key-ceremony record (``evidence.json``) of one runbook run, and its HTML summary.

The record is built in two processes. The notebook kernel fills the sections about the
HSM, the AES key, the wrapping, the import, KMS and the checks, and saves them after every
step, so a run that stops half way still leaves its evidence. The runner adds the run
section (ids, versions, runbook hash, times), the failed cells and the secret-scan verdict.

Nothing secret enters the record: the import token and the wrapped blob appear as SHA-256
and length, plaintexts and ciphertexts as SHA-256, people as declared by the operator.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from byok.evidence.records import utc_now

EVIDENCE_NAME = "evidence.json"
EVIDENCE_HTML_NAME = "evidence.html"
SCHEMA = "byok.ceremony/1"

# NIST SP 800-131A Rev. 2 (March 2019), section 6: RSA key transport with PKCS#1 v1.5
# padding is disallowed after 31 December 2023; RSA-OAEP with a modulus of at least
# 2048 bits stays acceptable. SP 800-57 Part 1 Rev. 5, table 2: RSA-2048 gives about
# 112 bits of security, AES-256 gives 256.
_SECURITY_BITS = {"RSA_2048": 112, "RSA_3072": 128, "RSA_4096": 152}
_OAEP_HASH = {"RSAES_OAEP_SHA_256": "SHA-256", "RSAES_OAEP_SHA_1": "SHA-1"}


def new_record() -> dict[str, Any]:
    """Return an empty ceremony record with every section present."""
    return {
        "schema": SCHEMA,
        "run": {},
        "people": [],
        "split_knowledge": split_knowledge(),
        "hsm": {},
        "aes_key": {},
        "wrapping": {},
        "import": {},
        "kms": {},
        "steps": [],
        "exceptions": [],
        "checks": {},
        "secret_scan": {},
    }


def split_knowledge() -> dict[str, Any]:
    return {
        "applicable": False,
        "reason": (
            "the AES key is generated inside the HSM and leaves it only wrapped under the KMS "
            "public key, so no cleartext key or key component exists to split between custodians"
        ),
        "evidence": "aes_key.attributes: CKA_SENSITIVE true, CKA_LOCAL true, CKA_ALWAYS_SENSITIVE true, "
        "and C_GetAttributeValue(CKA_VALUE) returned CKR_ATTRIBUTE_SENSITIVE",
    }


def declared_people(operator: str, approver: str, witnesses: list[str]) -> list[dict[str, str]]:
    """Return the people of the ceremony as the operator declared them (never authenticated)."""
    people = []
    if operator:
        people.append({"name": operator, "role": "operator", "identity": "declared"})
    if approver:
        people.append({"name": approver, "role": "approver", "identity": "declared"})
    for entry in witnesses:
        name, _, role = str(entry).partition(":")
        people.append({"name": name.strip(), "role": role.strip() or "witness", "identity": "declared"})
    return people


def wrapping_verdict(algorithm: str, key_spec: str) -> dict[str, Any]:
    """Describe the key transport of ``algorithm`` and judge it against NIST SP 800-131A Rev. 2."""
    strength = _SECURITY_BITS.get(key_spec)
    oaep_hash = _OAEP_HASH.get(algorithm)
    entry: dict[str, Any] = {
        "WrappingAlgorithm": algorithm,
        "WrappingKeySpec": key_spec,
        "padding": "OAEP" if oaep_hash else "PKCS#1 v1.5",
        "OAEP hash": oaep_hash or "not applicable",
        "MGF1 hash": oaep_hash or "not applicable",
        "OAEP label": "empty" if oaep_hash else "not applicable",
        "transport strength (bits, estimate)": strength,
        "key strength (bits)": 256,
    }
    strength_note = (
        f"the transport key {key_spec} gives about {strength} bits of security beside the "
        "AES-256 key's 256 bits (NIST SP 800-57 Part 1 Rev. 5, table 2)"
    )
    if oaep_hash:
        entry["verdict"] = "acceptable"
        entry["reason"] = f"RSA-OAEP key transport is acceptable under NIST SP 800-131A Rev. 2; {strength_note}"
    else:
        entry["verdict"] = "disallowed"
        entry["reason"] = (
            "PKCS#1 v1.5 key transport is disallowed after 2023 by NIST SP 800-131A Rev. 2; "
            f"use RSAES_OAEP_SHA_256; {strength_note}"
        )
    return entry


def step_entry(record: Any, *, resource: str, pkcs11_return_code: str | None = None) -> dict[str, Any]:
    """Return the ceremony's view of a ``StepRecord``: time, result, request ids and resource."""
    data = record.to_dict()
    request_ids = {
        name: value
        for name, value in data["observations"].items()
        if "RequestId" in name and isinstance(value, str)
    }
    round_trip = data["observations"].get("round trip")
    if isinstance(round_trip, dict):
        request_ids.update({name: value for name, value in round_trip.items() if "RequestId" in name})
    return {
        "step": data["step"],
        "guide_section": data["guide_section"],
        "started_utc": data["started"],
        "finished_utc": data["finished"],
        "result": data["verdict"],
        "kms_request_ids": request_ids,
        "pkcs11_return_code": pkcs11_return_code,
        "resource": resource,
        "inputs": data["inputs"],
        "observations": data["observations"],
        "checks": data["checks"],
    }


def exception_entry(kind: str, reason: str, **details: Any) -> dict[str, Any]:
    return {"time_utc": utc_now(), "kind": kind, "reason": reason, **details}


def save(record: dict[str, Any], path: Path) -> None:
    """Write the record atomically, so a reader never sees half a file."""
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# -- HTML summary ---------------------------------------------------------------------------

_STYLE = """
body { font-family: sans-serif; margin: 2em; max-width: 72em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
.passed { color: #166534; } .failed { color: #b91c1c; } .blocked { color: #92400e; }
code { font-size: 0.9em; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, dict | list):
        return f"<code>{html.escape(json.dumps(value, default=str))}</code>"
    return html.escape("" if value is None else str(value))


def _table(mapping: dict[str, Any]) -> str:
    if not mapping:
        return "<p>not recorded</p>"
    rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>" for k, v in mapping.items())
    return f"<table>{rows}</table>"


def render_html(record: dict[str, Any]) -> str:
    """Return a self-contained HTML page (no scripts, no external URLs) summarizing the record."""
    run = record.get("run", {})
    verdict = run.get("verdict", "unknown")
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>byok key ceremony {html.escape(str(run.get('id', '')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Key ceremony {html.escape(str(run.get('id', '')))}: <span class='{html.escape(verdict)}'>{html.escape(verdict)}</span></h1>",
        "<h2>Run</h2>", _table(run),
        "<h2>People (as declared)</h2>",
    ]
    people = record.get("people", [])
    if people:
        rows = "".join(
            f"<tr><td>{_cell(p['name'])}</td><td>{_cell(p['role'])}</td><td>{_cell(p['identity'])}</td></tr>" for p in people
        )
        parts.append(f"<table><tr><th>name</th><th>role</th><th>identity</th></tr>{rows}</table>")
    else:
        parts.append("<p>none declared</p>")
    parts += ["<h2>Steps</h2>"]
    steps = record.get("steps", [])
    if steps:
        rows = "".join(
            f"<tr><td>{_cell(s['step'])}</td><td class='{html.escape(s['result'])}'>{_cell(s['result'])}</td>"
            f"<td>{_cell(s['started_utc'])}</td><td>{_cell(s['resource'])}</td>"
            f"<td>{_cell(s['kms_request_ids'] or s.get('pkcs11_return_code'))}</td></tr>"
            for s in steps
        )
        parts.append(
            "<table><tr><th>step</th><th>result</th><th>started (UTC)</th><th>resource</th>"
            f"<th>RequestId / PKCS#11 return code</th></tr>{rows}</table>"
        )
    else:
        parts.append("<p>no step completed</p>")
    for title, key in (
        ("Exceptions", "exceptions"),
        ("Split knowledge", "split_knowledge"),
        ("HSM", "hsm"),
        ("AES key", "aes_key"),
        ("Wrapping", "wrapping"),
        ("Import", "import"),
        ("KMS", "kms"),
        ("Checks", "checks"),
        ("Previous bundle", "previous_bundle"),
        ("Secret scan", "secret_scan"),
    ):
        value = record.get(key)
        if value is None:
            continue
        parts.append(f"<h2>{title}</h2>")
        if isinstance(value, list):
            parts.append("".join(_table(item) for item in value) if value else "<p>none</p>")
        else:
            parts.append(_table(value))
    parts.append("</body></html>\n")
    return "".join(parts)
