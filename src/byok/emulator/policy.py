"""RAM policy documents and their evaluation for KMS calls made with a RAM user's AccessKey.

Rules from the KMS guide "Use RAM to control access to KMS resources": a statement has
Effect Allow or Deny, Action ``kms:<ApiName>`` with ``*`` wildcards, and Resource ARNs
such as ``acs:kms:<region>:<account>:key/<key-id>`` with ``*`` wildcards. An explicit
Deny wins over any Allow, and a call that no Allow matches is denied.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache

POLICY_DOCUMENT_VERSION = "1"
EFFECTS = ("Allow", "Deny")


class MalformedPolicy(ValueError):
    """The policy document is not valid JSON of the RAM policy grammar."""


@dataclass(frozen=True)
class Statement:
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    has_condition: bool

    def matches(self, action: str, resource: str) -> bool:
        return any(_pattern(pattern, True).fullmatch(action) for pattern in self.actions) and any(
            _pattern(pattern, False).fullmatch(resource) for pattern in self.resources
        )


@lru_cache(maxsize=4096)
def _pattern(wildcard: str, ignore_case: bool) -> re.Pattern[str]:
    # "*" matches any run of characters and "?" one character, as in RAM policy grammar.
    # NOTE: case-insensitive action names are inferred; resources are compared case-sensitively.
    translated = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in wildcard)
    return re.compile(translated, re.IGNORECASE if ignore_case else 0)


def _string_list(value: object, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise MalformedPolicy(f"{field} must be a string or a non-empty list of strings")


def parse_policy_document(text: str) -> tuple[Statement, ...]:
    """Parse a RAM policy document; raise MalformedPolicy naming the first invalid field."""
    try:
        document = json.loads(text)
    except ValueError:
        raise MalformedPolicy("the policy document is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedPolicy("the policy document is not a JSON object")
    if document.get("Version") != POLICY_DOCUMENT_VERSION:
        raise MalformedPolicy(f'Version must be "{POLICY_DOCUMENT_VERSION}"')
    raw_statements = document.get("Statement")
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list) or not raw_statements:
        raise MalformedPolicy("Statement must be a non-empty list")
    statements = []
    for raw in raw_statements:
        if not isinstance(raw, dict):
            raise MalformedPolicy("each Statement must be an object")
        effect = raw.get("Effect")
        if effect not in EFFECTS:
            raise MalformedPolicy("Effect must be Allow or Deny")
        statements.append(
            Statement(
                effect=effect,
                actions=_string_list(raw.get("Action"), "Action"),
                resources=_string_list(raw.get("Resource"), "Resource"),
                has_condition=bool(raw.get("Condition")),
            )
        )
    return tuple(statements)


@dataclass(frozen=True)
class Permissions:
    """The statements of every policy attached to one RAM user."""

    statements: tuple[Statement, ...]

    def allows(self, action: str, resource: str) -> bool:
        allowed = False
        for statement in self.statements:
            if statement.has_condition:
                # NOTE: conditions (kms:tag/…, acs:CurrentTime) are not evaluated. Failing
                # closed is inferred: such an Allow grants nothing and such a Deny always applies.
                if statement.effect == "Deny" and statement.matches(action, resource):
                    return False
                continue
            if statement.matches(action, resource):
                if statement.effect == "Deny":
                    return False
                allowed = True
        return allowed
