"""Request validation driven by the committed, hand-checked parameter spec ``kms-2016-01-20.json``.

Every request of a served action is checked here before its handler runs: a missing
required parameter gives MissingParameter, a value of the wrong type or outside its
enum, range or length gives InvalidParameter (both 400, with the messages of the KMS
common error table). Booleans are case-insensitive because both Python SDKs send
``True``/``False``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from byok.emulator import errors

SPEC_FILE_NAME = "kms-2016-01-20.json"
_BOOLEANS = ("true", "false")


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    type: str
    required: bool
    enum: tuple[str, ...] | None
    minimum: int | None
    maximum: int | None
    min_length: int | None
    max_length: int | None
    source: str

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ParameterSpec:
        enum = raw.get("enum")
        return cls(
            name=raw["name"],
            type=raw["type"],
            required=bool(raw["required"]),
            enum=tuple(enum) if enum is not None else None,
            minimum=raw.get("minimum"),
            maximum=raw.get("maximum"),
            min_length=raw.get("minLength"),
            max_length=raw.get("maxLength"),
            source=raw.get("source", ""),
        )

    def check(self, value: str) -> None:
        """Raise InvalidParameter if ``value`` (present, non-empty) breaks a rule of this parameter."""
        if self.type == "integer":
            try:
                number = int(value, 10)
            except ValueError:
                raise errors.invalid_parameter(self.name) from None
            if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
                raise errors.invalid_parameter(self.name)
        elif self.type == "boolean":
            if value.lower() not in _BOOLEANS:
                raise errors.invalid_parameter(self.name)
        elif self.type == "json-object":
            try:
                parsed = json.loads(value)
            except ValueError:
                raise errors.invalid_parameter(self.name) from None
            if not isinstance(parsed, dict):
                raise errors.invalid_parameter(self.name)
        if self.enum is not None and value not in self.enum:
            raise errors.invalid_parameter(self.name)
        if self.min_length is not None and len(value) < self.min_length:
            raise errors.invalid_parameter(self.name)
        if self.max_length is not None and len(value) > self.max_length:
            raise errors.invalid_parameter(self.name)


@cache
def load_spec() -> dict[str, tuple[ParameterSpec, ...]]:
    """Return the parameter specs of every served action, read once from the package."""
    text = resources.files(__name__).joinpath(SPEC_FILE_NAME).read_text(encoding="utf-8")
    document = json.loads(text)
    return {
        action: tuple(ParameterSpec.from_json(raw) for raw in entry["parameters"])
        for action, entry in document["actions"].items()
    }


def validate(action: str, params: Mapping[str, str]) -> None:
    """Check ``params`` against the spec of ``action``; parameters not in the spec are ignored."""
    for parameter in load_spec().get(action, ()):
        value = params.get(parameter.name)
        if value is None or value == "":
            if parameter.required:
                raise errors.missing_parameter(parameter.name)
            continue
        parameter.check(value)
