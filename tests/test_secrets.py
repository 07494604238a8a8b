"""Secret values: hidden from repr, stored 0600, found by the leak scanner in every encoding."""

from __future__ import annotations

import base64
import logging
import stat
from urllib.parse import quote

import pytest

from byok.errors import ConfigError, SecretNotFound
from byok.evidence.leaks import RedactingFilter, scan_bytes, scan_paths
from byok.secrets import (
    Secret,
    generate_secret_file,
    load_secret,
    read_secret_file,
    write_secret_file,
)


def test_secret_repr_hides_value() -> None:
    secret = Secret("s3cr3t-value-0042", "test secret")
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}", "%s" % (secret,)):  # noqa: UP031 - the %-operator path must hide the value too
        assert "s3cr3t-value-0042" not in text
    assert secret.reveal() == "s3cr3t-value-0042"


def test_secret_file_mode_0600(tmp_path) -> None:
    path = tmp_path / "secrets" / "pin"
    generated = generate_secret_file(path, "pin")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert generate_secret_file(path, "pin") == generated


def test_world_readable_secret_rejected(tmp_path) -> None:
    path = tmp_path / "pin"
    write_secret_file(path, "12345678")
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="mode 0644") as rejected:
        read_secret_file(path, "pin")
    assert "chmod 600" in rejected.value.diagnostics()


def test_environment_wins_over_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "pin"
    write_secret_file(path, "from-file-1234")
    monkeypatch.setenv("BYOK_TEST_PIN", "from-env-5678")
    assert load_secret("pin", env="BYOK_TEST_PIN", file=path).reveal() == "from-env-5678"
    monkeypatch.delenv("BYOK_TEST_PIN")
    assert load_secret("pin", env="BYOK_TEST_PIN", file=path).reveal() == "from-file-1234"


def test_missing_secret_names_both_places(tmp_path) -> None:
    with pytest.raises(SecretNotFound) as missing:
        load_secret("pin", env="BYOK_TEST_NOT_SET", file=tmp_path / "absent")
    assert "BYOK_TEST_NOT_SET" in str(missing.value)
    assert "absent" in str(missing.value)


@pytest.mark.parametrize(
    "encode",
    [
        lambda value: value.encode(),
        lambda value: quote(value, safe="").encode(),
        lambda value: base64.b64encode(value.encode()),
        lambda value: value.encode().hex().encode(),
    ],
    ids=["literal", "percent-encoded", "base64", "hex"],
)
def test_scanner_finds_encodings(encode) -> None:
    value = "token/with+special=chars&more"
    data = b"prefix " + encode(value) + b" suffix"
    hits = scan_bytes(data, where="sample", secrets={value: "ImportToken"})
    assert [hit.secret_name for hit in hits] == ["ImportToken"]


def test_scanner_reports_file(tmp_path) -> None:
    (tmp_path / "clean.json").write_text("{}")
    (tmp_path / "leaky.json").write_text('{"pin": "98761234"}')
    hits, scanned = scan_paths([tmp_path], secrets={"98761234": "user PIN"})
    assert scanned == 2
    assert [hit.path for hit in hits] == [str(tmp_path / "leaky.json")]


def test_log_redaction() -> None:
    secret = Secret("redact-me-please-77", "log test secret")
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "value is %s", (secret.reveal(),), None)
    RedactingFilter().filter(record)
    assert "redact-me-please-77" not in record.getMessage()
