"""Clients for Alibaba Cloud KMS and RAM, pointed at the real service or the byok emulator."""

from byok.kms.client import (
    Alias,
    DataKeyResult,
    KeyVersion,
    ListAliasesResult,
    ListKeyVersionsResult,
    CallRecord,
    DecryptResult,
    EncryptResult,
    ImportParameters,
    KeyMetadata,
    KeyResult,
    KmsClient,
    KmsEndpoint,
    ListKeysResult,
)

__all__ = [
    "Alias",
    "DataKeyResult",
    "KeyVersion",
    "ListAliasesResult",
    "ListKeyVersionsResult",
    "CallRecord",
    "DecryptResult",
    "EncryptResult",
    "ImportParameters",
    "KeyMetadata",
    "KeyResult",
    "KmsClient",
    "KmsEndpoint",
    "ListKeysResult",
]
