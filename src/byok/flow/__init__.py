"""The procedure byok automates, as plain functions that each return an evidence record.

``byok.flow.guide`` holds the vendor guide's steps; further modules hold what goes beyond
the guide. Steps, runbooks and the CLI call these functions, so a fix lands everywhere.
"""

from byok.flow.guide import (
    AES_256_KEY_SPEC,
    IMPORT_TOKEN_LIFETIME,
    IMPORT_TOKEN_SAFETY_MARGIN,
    CheckFailed,
    create_external_key,
    encrypt_decrypt,
    generate_aes_key,
    get_import_parameters,
    import_key_material,
    import_wrapping_public_key,
    material_expiry,
    parse_utc,
    wrap_aes_key,
)

__all__ = [
    "AES_256_KEY_SPEC",
    "IMPORT_TOKEN_LIFETIME",
    "IMPORT_TOKEN_SAFETY_MARGIN",
    "CheckFailed",
    "create_external_key",
    "encrypt_decrypt",
    "generate_aes_key",
    "get_import_parameters",
    "import_key_material",
    "import_wrapping_public_key",
    "material_expiry",
    "parse_utc",
    "wrap_aes_key",
]
