"""Clients for Alibaba Cloud KMS and RAM, pointed at the real service or the byok emulator."""

from byok.kms.client import (
    Alias,
    CallRecord,
    DataKeyResult,
    DecryptResult,
    EncryptResult,
    ImportParameters,
    KeyMetadata,
    KeyResult,
    KeyVersion,
    KmsClient,
    KmsEndpoint,
    ListAliasesResult,
    ListKeysResult,
    ListKeyVersionsResult,
)

__all__ = [
    "Alias",
    "CallRecord",
    "DataKeyResult",
    "DecryptResult",
    "EncryptResult",
    "ImportParameters",
    "KeyMetadata",
    "KeyResult",
    "KeyVersion",
    "KmsClient",
    "KmsEndpoint",
    "ListAliasesResult",
    "ListKeyVersionsResult",
    "ListKeysResult",
]
