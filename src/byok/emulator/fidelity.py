"""The emulator's behaviour rules with their sources, and the generator of docs/emulator-fidelity.md.

Each rule names where the emulator's behaviour comes from: ``document`` (Alibaba Cloud
documentation or OpenAPI metadata), ``SDK model`` (alibabacloud-kms20160120 3.3.1,
aliyun-python-sdk-* source) or ``inferred`` (a choice where the sources are silent).
The parameter table is read from the committed spec. Run
``python -m byok.emulator.fidelity --write`` after changing either; a test checks that the
committed document is up to date.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from byok.emulator.spec import load_spec

DOCUMENT = "document"
SDK_MODEL = "SDK model"
INFERRED = "inferred"
DOC_PATH = Path("docs/emulator-fidelity.md")


@dataclass(frozen=True)
class Rule:
    area: str
    behaviour: str
    source: str
    reference: str


RULES: tuple[Rule, ...] = (
    Rule("Signing", "RPC signature v1 (HMAC-SHA1) and ACS3-HMAC-SHA256 verified; SignedHeaders taken from the request", DOCUMENT, "KMS Signature page; V3 request structure and signature"),
    Rule("Signing", "SignatureDoesNotMatch message ends with the server's string to sign", SDK_MODEL, "aliyun-python-sdk-core client.py _get_server_exception"),
    Rule("Signing", "Timestamp window of 15 minutes either side of real time", INFERRED, "the 15 minutes are documented, the direction is not"),
    Rule("Signing", "Nonces remembered for 15 minutes (configurable)", INFERRED, "retention undocumented"),
    Rule("Errors", "Error body RequestId, HostId, Code, Message, Recommend", INFERRED, "gateway bodies quoted in public code; Recommend shape unconfirmed for KMS"),
    Rule("Parameters", "Required, enum, range and length checks from src/byok/emulator/spec/kms-2016-01-20.json", DOCUMENT, "OpenAPI metadata, hand-corrected (see the spec's corrections)"),
    Rule("Parameters", "Booleans accepted case-insensitively", SDK_MODEL, "both Python SDKs send True/False"),
    Rule("Keys", "Key ids, aliases and ARNs accepted by DescribeKey, Encrypt, GenerateDataKey*, ListAliasesByKeyId, ListKeyVersions, DescribeKeyVersion", SDK_MODEL, "KeyId field documentation of the request models"),
    Rule("Keys", "Unsupported.Alias for an alias passed to actions that ask for the globally unique key id", INFERRED, "which actions reject aliases is not documented"),
    Rule("States", "State table of Encrypt/Decrypt/GenerateDataKey, Enable/Disable, ScheduleKeyDeletion, CancelKeyDeletion, CreateAlias, ImportKeyMaterial, DeleteKeyMaterial", DOCUMENT, "Impact of CMK states on API calls"),
    Rule("States", "CancelKeyDeletion returns the key to Enabled", DOCUMENT, "CancelKeyDeletion API reference"),
    Rule("States", "CancelKeyDeletion of a key whose material was deleted returns it to PendingImport", INFERRED, "undocumented"),
    Rule("States", "DeleteKeyMaterial keeps a PendingDeletion key's state and delete date, else PendingImport", DOCUMENT, "DeleteKeyMaterial API reference"),
    Rule("States", "DeleteKeyMaterial on an Aliyun_KMS key is Unsupported.Origin", INFERRED, "undocumented"),
    Rule("States", "Expired material deletes the material and shows PendingImport with MaterialExpireTime empty", INFERRED, "the documents say only that the key becomes unusable"),
    Rule("States", "A key whose deletion window ended is destroyed; every later call is Forbidden.KeyNotFound", DOCUMENT, "ScheduleKeyDeletion API reference"),
    Rule("States", "Clock-driven transitions apply at the first request after the emulated time passes the date", INFERRED, "an emulator choice; the outcome matches a timer"),
    Rule("Import", "Re-import accepts only the first material (constant-time comparison) and rejects other material with InvalidKeyMaterial", DOCUMENT, "Import key material guide; the code is inferred"),
    Rule("Import", "Import tokens valid 24 hours, reusable, bound to key, public key and algorithm", DOCUMENT, "GetParametersForImport API reference"),
    Rule("Crypto", "CiphertextBlob = key version id (36) + IV (12) + AES-256-GCM ciphertext + 16-byte tag", SDK_MODEL, "Alibaba KMS transfer SDK; tag position inferred"),
    Rule("Crypto", "GenerateDataKey Plaintext is base64 of the data key and the blob encrypts that base64 text", SDK_MODEL, "KMS transfer SDK generate_data_key_transfer_handler.py"),
    Rule("Crypto", "DryRun fails with DryRunOperationError (HTTP 400) after the state and permission checks", SDK_MODEL, "DryRun field documentation; status inferred"),
    Rule("Aliases", "Alias 1-255 characters, prefix alias/, never alias/acs; AliasAlreadyExists on duplicates", DOCUMENT, "CreateAlias API reference"),
    Rule("Aliases", "Alias characters limited to letters, digits, _, - and /", INFERRED, "console rule, not in the API reference"),
    Rule("Tags", "At most 20 tags per key; keys starting with aliyun or acs: rejected", INFERRED, "the documents give 10 and 20; the emulator allows 20"),
    Rule("Regions", "DescribeRegions lists only the region the emulator serves", INFERRED, "one region per emulator process"),
    Rule("RAM", "Deny over Allow, kms: action and ARN wildcards, implicit deny", DOCUMENT, "Use RAM to control access to KMS resources"),
    Rule("RAM", "Alias operations need permission on the alias and on the key", DOCUMENT, "Use RAM to control access to KMS resources"),
    Rule("RAM", "Forbidden.NoPermission (403) message names the resource ARN", DOCUMENT, "real KMS message quoted in aliyun-openapi-java-sdk issues"),
    Rule("RAM", "DescribeRegions needs no permission", DOCUMENT, "Use RAM to control access to KMS resources"),
    Rule("RAM", "Policy conditions are not evaluated: a conditional Allow grants nothing, a conditional Deny always applies", INFERRED, "fail-closed emulator choice"),
    Rule("RAM", "Action names compared case-insensitively, resources case-sensitively", INFERRED, "undocumented"),
    Rule("RAM", "RAM error statuses and messages (EntityNotExist.User 404, DeleteConflict.* 409, …)", INFERRED, "codes from the RAM API; statuses and texts unconfirmed"),
    Rule("Faults", "Throttling 400, Rejected.Throttling 429, InternalFailure 500, ServiceUnavailableTemporary 503 with x-acs-retry-after", DOCUMENT, "KMS common error table; header from alibabacloud-tea-openapi"),
    Rule("Store", "SQLite WAL, one transaction per state change; material and secrets sealed under the master key", INFERRED, "emulator design"),
)


def render() -> str:
    """Return the Markdown text of docs/emulator-fidelity.md."""
    lines = [
        "# KMS emulator fidelity",
        "",
        "Generated by `python -m byok.emulator.fidelity --write` from the rule registry in",
        "`src/byok/emulator/fidelity.py` and the parameter spec",
        "`src/byok/emulator/spec/kms-2016-01-20.json`. Do not edit by hand.",
        "",
        "Source: **document** (Alibaba Cloud documentation or OpenAPI metadata), **SDK model**",
        "(alibabacloud-kms20160120 3.3.1 or aliyun-python-sdk-* source) or **inferred** (the",
        "sources are silent and the emulator chose).",
        "",
        "## Behaviour rules",
        "",
        "| Area | Behaviour | Source | Reference |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r.area} | {r.behaviour} | {r.source} | {r.reference} |" for r in RULES]
    counts = {source: sum(1 for r in RULES if r.source == source) for source in (DOCUMENT, SDK_MODEL, INFERRED)}
    lines += ["", f"Rules: {len(RULES)} ({', '.join(f'{count} {source}' for source, count in counts.items())}).", ""]
    lines += ["## Validated parameters", "", "| Action | Parameter | Type | Required | Constraint | Source |", "|---|---|---|---|---|---|"]
    for action, parameters in sorted(load_spec().items()):
        if not parameters:
            lines.append(f"| {action} | (none) | | | | |")
        for p in parameters:
            constraint = []
            if p.enum:
                constraint.append("one of " + ", ".join(p.enum))
            if p.minimum is not None or p.maximum is not None:
                constraint.append(f"{p.minimum if p.minimum is not None else ''}..{p.maximum if p.maximum is not None else ''}")
            if p.min_length is not None or p.max_length is not None:
                constraint.append(f"length {p.min_length or 0}..{p.max_length if p.max_length is not None else ''}")
            lines.append(
                f"| {action} | {p.name} | {p.type} | {'yes' if p.required else 'no'} | {'; '.join(constraint)} | {p.source} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print or write docs/emulator-fidelity.md.")
    parser.add_argument("--write", type=Path, nargs="?", const=DOC_PATH, default=None, help="file to write (default docs/emulator-fidelity.md)")
    arguments = parser.parse_args(argv)
    text = render()
    if arguments.write is None:
        sys.stdout.write(text)
    else:
        arguments.write.parent.mkdir(parents=True, exist_ok=True)
        arguments.write.write_text(text, encoding="utf-8")
        print(f"wrote {arguments.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
