"""AES-GCM decryption (NIST SP 800-38D) built from a token's AES block operation.

For tokens without CKM_AES_GCM, such as the opencryptoki 3.8.1 soft token: the token
computes every AES block with C_Encrypt(CKM_AES_ECB) under the key, and this module
does the counter arithmetic and GHASH in software. The key never leaves the token,
but the hash subkey H = AES(K, 0^128) and the keystream do, which lets their holder
forge tags for this key. byok uses this only on test tokens (family opencryptoki).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable

BLOCK_BYTES = 16
_R = 0xE1 << 120


def _multiply(x: int, y: int) -> int:
    """Multiply two elements of GF(2^128) in GCM's bit order (SP 800-38D, algorithm 1)."""
    result = 0
    v = y
    for bit in range(127, -1, -1):
        if (x >> bit) & 1:
            result ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return result


def ghash(h: bytes, aad: bytes, ciphertext: bytes) -> bytes:
    """Return GHASH_H(A || pad || C || pad || len(A) || len(C)) as 16 bytes."""
    subkey = int.from_bytes(h, "big")
    state = 0
    for data in (aad, ciphertext):
        padded = data + bytes(-len(data) % BLOCK_BYTES)
        for offset in range(0, len(padded), BLOCK_BYTES):
            state = _multiply(state ^ int.from_bytes(padded[offset : offset + BLOCK_BYTES], "big"), subkey)
    lengths = (len(aad) * 8).to_bytes(8, "big") + (len(ciphertext) * 8).to_bytes(8, "big")
    state = _multiply(state ^ int.from_bytes(lengths, "big"), subkey)
    return state.to_bytes(BLOCK_BYTES, "big")


def _counter_block(iv: bytes, counter: int) -> bytes:
    return iv + (counter & 0xFFFFFFFF).to_bytes(4, "big")


def decrypt_with_block_cipher(
    encrypt_blocks: Callable[[bytes], bytes], iv: bytes, ciphertext_and_tag: bytes, aad: bytes, tag_bytes: int = 16
) -> bytes | None:
    """Decrypt AES-GCM with a 12-byte IV using ``encrypt_blocks`` (AES-ECB under the key); None when the tag fails.

    ``encrypt_blocks`` receives a multiple of 16 bytes and returns their AES-ECB
    encryption; it is called once, with H's zero block, J0 and every counter block.
    """
    ciphertext, tag = ciphertext_and_tag[:-tag_bytes], ciphertext_and_tag[-tag_bytes:]
    block_count = (len(ciphertext) + BLOCK_BYTES - 1) // BLOCK_BYTES
    # J0 = IV || 0^31 || 1 for a 96-bit IV; the data uses inc32(J0) onwards.
    blocks = bytes(BLOCK_BYTES) + b"".join(_counter_block(iv, counter) for counter in range(1, block_count + 2))
    encrypted = encrypt_blocks(blocks)
    h = encrypted[:BLOCK_BYTES]
    tag_mask = encrypted[BLOCK_BYTES : 2 * BLOCK_BYTES]
    keystream = encrypted[2 * BLOCK_BYTES :]

    expected = bytes(a ^ b for a, b in zip(ghash(h, aad, ciphertext), tag_mask, strict=True))[:tag_bytes]
    if not hmac.compare_digest(expected, tag):
        return None
    return bytes(a ^ b for a, b in zip(ciphertext, keystream, strict=False))
