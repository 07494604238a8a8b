"""Values that steps hand to later steps through ``target_fixture``.

allure-pytest-bdd records every step argument with ``repr``, so these classes show only
identifiers: never a token, never key material, never a wrapped blob.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from byok.evidence import StepRecord
from byok.keyformats import WrappingPublicKey
from byok.kms import ImportParameters


@dataclass
class Cmk:
    key_id: str
    records: list[StepRecord] = field(default_factory=list, repr=False)
    aes_key_label: str | None = None


@dataclass
class ImportBundle:
    key_id: str
    wrapping_algorithm: str
    parameters: ImportParameters = field(repr=False)
    public_key: WrappingPublicKey = field(repr=False)
    record: StepRecord = field(repr=False)


@dataclass
class HsmObject:
    label: str
    object_class: str
    record: StepRecord = field(repr=False)
    key_id: bytes | None = field(default=None, repr=False)


@dataclass
class WrappedKey:
    aes_key_label: str
    wrapping_algorithm: str
    blob: bytes = field(repr=False)
    record: StepRecord = field(repr=False)


@dataclass
class Upload:
    key_id: str
    material_expire_unix: int
    record: StepRecord = field(repr=False)


@dataclass
class Ciphertext:
    key_id: str
    key_version_id: str
    blob: str = field(repr=False)
    encryption_context: dict[str, str] | None = None
