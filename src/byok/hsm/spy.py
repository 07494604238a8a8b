"""PKCS#11 call evidence: a throw-away wrap traced through OpenSC's pkcs11-spy.

pkcs11-spy.so (Debian package opensc-pkcs11) is a PKCS#11 module that forwards every
call to the module named in PKCS11SPY and logs the call, its arguments and its
return value to the file named in PKCS11SPY_OUTPUT. The trace also contains the PIN
bytes of C_Login, so the raw trace stays in a private folder and is deleted after
reading. Only the C_WrapKey calls are kept, with hex dumps replaced by their length.

The wrap runs in a child process (``python -m byok.hsm.spy``), because this process
has the real module loaded already and PyKCS11 loads each library once per process.
The child reads the PIN the same way the parent does (environment variable or PIN
file), so the PIN never crosses a process boundary.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from byok.errors import ConfigError, HsmError
from byok.profile import HsmSettings, resolve_module
from byok.secrets import Secret

logger = logging.getLogger(__name__)

SPY_MODULE = "pkcs11-spy.so"
_CALL_HEADER = re.compile(r"^\d+: (C_\w+)\s*$")
_HEX_DUMP_LINE = re.compile(r"^\s+[0-9A-Fa-f]{8}\s{2}")
# Secret-bearing arguments pkcs11-spy prints (C_Login, C_InitPIN, C_SetPIN, C_InitToken).
_SECRET_ARGUMENTS = ("pPin", "pOldPin", "pNewPin")
_CHILD_TIMEOUT_SECONDS = 120


@dataclass(frozen=True)
class SpyTrace:
    """The filtered C_WrapKey calls of a traced wrap, and their arguments as a table."""

    excerpt: str
    calls: list[dict[str, str]]


def filter_trace(text: str) -> str:
    """Keep only the C_WrapKey calls of a pkcs11-spy trace; replace hex dumps by their line count.

    Lines of secret arguments are dropped even inside kept calls, so the excerpt can
    never carry a PIN.
    """
    kept: list[str] = []
    keep = False
    dump_lines = 0
    for line in text.splitlines():
        header = _CALL_HEADER.match(line)
        if header:
            if dump_lines:
                kept.append(f"    [hex dump of {dump_lines} line(s) omitted]")
                dump_lines = 0
            keep = header.group(1) == "C_WrapKey"
        if not keep:
            continue
        if _HEX_DUMP_LINE.match(line):
            dump_lines += 1
            continue
        if dump_lines:
            kept.append(f"    [hex dump of {dump_lines} line(s) omitted]")
            dump_lines = 0
        if any(f"] {name}" in line or f" {name}[" in line for name in _SECRET_ARGUMENTS):
            continue
        kept.append(line.rstrip())
    if dump_lines:
        kept.append(f"    [hex dump of {dump_lines} line(s) omitted]")
    return "\n".join(kept).strip() + "\n"


def parse_calls(excerpt: str) -> list[dict[str, str]]:
    """Return each C_WrapKey call of an excerpt as {argument: value, "Returned": CKR}."""
    calls: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for line in excerpt.splitlines():
        if _CALL_HEADER.match(line):
            current = {}
            calls.append(current)
            continue
        if current is None:
            continue
        match = re.match(r"^\[(?:in|out)\] (\S+) = (.*)$", line)
        if match:
            current[match.group(1)] = match.group(2).strip()
        elif line.startswith("Returned:"):
            current["Returned"] = line.split(":", 1)[1].strip()
    return calls


def _contains_pin(excerpt: str, pin: Secret) -> bool:
    value = pin.reveal()
    spaced_hex = " ".join(f"{byte:02X}" for byte in value.encode("utf-8"))
    return value in excerpt or spaced_hex in excerpt.upper()


def trace_trial_wrap(
    settings: HsmSettings, state_dir: Path, algorithm: str, pin: Secret
) -> SpyTrace:
    """Run a throw-away wrap with ``algorithm`` under pkcs11-spy in a child process; return the C_WrapKey excerpt.

    ``pin`` is used only to confirm that the excerpt does not contain it. Raises
    ConfigError when pkcs11-spy.so is not installed and HsmError when the child fails
    or the excerpt contains no C_WrapKey call.
    """
    spy = resolve_module(SPY_MODULE)
    real_module = resolve_module(settings.module)
    with tempfile.TemporaryDirectory(prefix="byok-spy-") as private:
        os.chmod(private, 0o700)
        trace_path = Path(private) / "pkcs11-spy.log"
        environment = dict(os.environ, PKCS11SPY=str(real_module), PKCS11SPY_OUTPUT=str(trace_path))
        request = {
            "settings": dataclasses.asdict(settings) | {"module": str(spy)},
            "state_dir": str(Path(state_dir).resolve()),
            "algorithm": algorithm,
        }
        completed = subprocess.run(
            [sys.executable, "-m", "byok.hsm.spy"],
            input=json.dumps(request),
            env=environment,
            capture_output=True,
            text=True,
            timeout=_CHILD_TIMEOUT_SECONDS,
            check=False,
        )
        if completed.returncode != 0:
            raise HsmError(
                f"the traced wrap with {algorithm} failed in the child process (exit status "
                f"{completed.returncode}): {completed.stderr.strip().splitlines()[-1:] or ['no output']}",
                operation="C_WrapKey",
                fix="run the same wrap without pkcs11-spy to see whether the token or the spy fails",
            )
        excerpt = filter_trace(trace_path.read_text(encoding="utf-8", errors="replace"))
    # The raw trace is gone with the temporary folder; only the excerpt leaves this function.
    if _contains_pin(excerpt, pin):
        raise HsmError(
            "the pkcs11-spy excerpt still contains the user PIN, so it was discarded",
            operation="C_WrapKey",
            fix="extend byok.hsm.spy.filter_trace to drop the argument that carries it",
        )
    calls = parse_calls(excerpt)
    if not calls:
        raise HsmError(
            "the pkcs11-spy trace contains no C_WrapKey call",
            operation="C_WrapKey",
            fix=f"check that {spy} forwards to {real_module} (PKCS11SPY) and writes PKCS11SPY_OUTPUT",
        )
    logger.info("Traced %d C_WrapKey call(s) with %s through %s", len(calls), algorithm, spy)
    return SpyTrace(excerpt=excerpt, calls=calls)


def _child_main() -> int:
    """Child process: open the token through pkcs11-spy and do one throw-away wrap."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    from byok.hsm.config import resolve_pin
    from byok.hsm.mechanisms import wrap_mechanism_for
    from byok.hsm.session import Hsm

    request: dict[str, Any] = json.loads(sys.stdin.read())
    settings = HsmSettings(**request["settings"])
    state_dir = Path(request["state_dir"])
    pin = resolve_pin(settings, state_dir)
    hsm = Hsm.open(settings, state_dir)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with hsm.session(pin) as session:
        session.trial_wrap(wrap_mechanism_for(request["algorithm"]), key.public_key())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(_child_main())
    except (ConfigError, HsmError) as error:
        print(error.diagnostics(), file=sys.stderr)
        sys.exit(1)
