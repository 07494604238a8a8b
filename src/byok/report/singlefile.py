"""Reading the data embedded in an Allure 2 ``--single-file`` report.

Allure 2.46.1 writes every report file (test cases, widgets, history, attachments) into
``index.html`` as a call ``d('<path>','<base64 of the file>')``, and its scripts as
``data:text/javascript;base64,…`` URIs. byok reads those back to check the artifact it
ships: the outcomes it shows, its history, and every URL inside it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import Any

_EMBEDDED_FILE = re.compile(r"""\bd\(\s*'([^']+)'\s*,\s*'([A-Za-z0-9+/=]*)'\s*\)""")
_DATA_URI = re.compile(r"""data:[^,"'<>]{0,100}?;base64,([A-Za-z0-9+/=]+)""")
# Any other long quoted base64 run is decoded too, so a future container format of the
# generator cannot hide a URL from the external-reference scan.
_QUOTED_BASE64 = re.compile(r"""["'`]([A-Za-z0-9+/]{64,}={0,2})["'`]""")


def _decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def embedded_files(html: str) -> dict[str, bytes]:
    """Return the report files embedded in the page, keyed by their path in a folder report."""
    files = {}
    for match in _EMBEDDED_FILE.finditer(html):
        data = _decode(match.group(2))
        if data is not None:
            files[match.group(1)] = data
    return files


def embedded_json(files: dict[str, bytes], name: str) -> Any:
    """Parse one embedded file as JSON; raise ValueError naming the file when it is not."""
    if name not in files:
        raise ValueError(f"the report does not contain {name}")
    try:
        return json.loads(files[name].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{name} in the report is not valid JSON: {error}") from None


def decoded_texts(html: str) -> list[tuple[str, str]]:
    """Return (where, text) for the page itself and every base64 payload decoded from it."""
    texts = [("index.html", html)]
    for match in _EMBEDDED_FILE.finditer(html):
        data = _decode(match.group(2))
        if data is not None:
            texts.append((f"embedded {match.group(1)}", data.decode("utf-8", errors="replace")))
    seen = {match.group(2) for match in _EMBEDDED_FILE.finditer(html)}
    for pattern, kind in ((_DATA_URI, "data: URI"), (_QUOTED_BASE64, "base64 string")):
        for number, match in enumerate(pattern.finditer(html)):
            payload = match.group(1)
            if payload in seen:
                continue
            seen.add(payload)
            data = _decode(payload)
            if data is not None:
                texts.append((f"{kind} #{number}", data.decode("utf-8", errors="replace")))
    return texts


def extract_history(html_path: Path, target: Path) -> list[str]:
    """Write the embedded ``history/*.json`` files of a report into ``target``; return their names."""
    files = embedded_files(html_path.read_text(encoding="utf-8"))
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in sorted(files.items()):
        if name.startswith("history/") and "/" not in name.removeprefix("history/"):
            (target / name.removeprefix("history/")).write_bytes(data)
            written.append(name.removeprefix("history/"))
    return written
