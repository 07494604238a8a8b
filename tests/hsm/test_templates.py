"""Per-family object templates."""

from __future__ import annotations

import PyKCS11
import pytest

from byok.errors import ConfigError
from byok.hsm.templates import aes_key_template, public_key_template


@pytest.mark.parametrize("family", ["softhsm", "opencryptoki", "luna", "dpod"])
def test_aes_template_sets_every_attribute(family: str) -> None:
    template = dict(aes_key_template(family, label="k", key_id=b"\x01"))

    assert template[PyKCS11.CKA_CLASS] == PyKCS11.CKO_SECRET_KEY
    assert template[PyKCS11.CKA_KEY_TYPE] == PyKCS11.CKK_AES
    assert template[PyKCS11.CKA_VALUE_LEN] == 32
    assert type(template[PyKCS11.CKA_VALUE_LEN]) is int
    expected_booleans = {
        PyKCS11.CKA_TOKEN: True,
        PyKCS11.CKA_PRIVATE: True,
        PyKCS11.CKA_SENSITIVE: True,
        PyKCS11.CKA_EXTRACTABLE: True,
        PyKCS11.CKA_ENCRYPT: True,
        PyKCS11.CKA_DECRYPT: True,
        PyKCS11.CKA_WRAP: False,
        PyKCS11.CKA_UNWRAP: False,
        PyKCS11.CKA_SIGN: False,
        PyKCS11.CKA_VERIFY: False,
        PyKCS11.CKA_DERIVE: False,
        PyKCS11.CKA_MODIFIABLE: True,
    }
    for attribute, value in expected_booleans.items():
        assert template[attribute] is value, PyKCS11.CKA[attribute]
    assert template[PyKCS11.CKA_LABEL] == "k"
    assert template[PyKCS11.CKA_ID] == b"\x01"


def test_dpod_requires_private_and_sensitive() -> None:
    with pytest.raises(ConfigError) as raised:
        aes_key_template("dpod", label="k", key_id=b"\x01", sensitive=False)

    assert "CKA_SENSITIVE" in raised.value.message
    assert (
        dict(aes_key_template("softhsm", label="k", key_id=b"\x01", sensitive=False))[
            PyKCS11.CKA_SENSITIVE
        ]
        is False
    )


def test_aes_template_rejects_bit_length() -> None:
    with pytest.raises(ConfigError) as raised:
        aes_key_template("softhsm", label="k", key_id=b"\x01", value_len=256)

    assert "in bytes" in raised.value.message


@pytest.mark.parametrize("family", ["softhsm", "luna"])
def test_public_key_template_is_explicit(family: str) -> None:
    template = dict(
        public_key_template(
            family,
            modulus=b"\xc1" * 256,
            public_exponent=b"\x01\x00\x01",
            label="w",
            key_id=b"\x02",
        )
    )

    assert template[PyKCS11.CKA_TOKEN] is False
    assert template[PyKCS11.CKA_PRIVATE] is False
    assert template[PyKCS11.CKA_WRAP] is True
    assert template[PyKCS11.CKA_ENCRYPT] is True
    assert template[PyKCS11.CKA_VERIFY] is False
    assert template[PyKCS11.CKA_MODIFIABLE] is True


def test_unknown_family_rejected() -> None:
    with pytest.raises(ConfigError) as raised:
        aes_key_template("nshield", label="k", key_id=b"\x01")

    assert "nshield" in raised.value.message
